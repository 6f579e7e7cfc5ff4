"""The model reproduces the official EfficientAT outputs (golden files) and scores long audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from earmark.audio import load
from earmark.features import mel_filterbank, n_frames
from earmark.model import Architecture, MobileNet, count_parameters, infer_width
from earmark.scoring import FRAME_HOP, FrameScorer, ScoringOptions
from earmark.tagger import Tagger, load_model

GOLDEN_32K = ("music", "speech", "typing", "concat4")
PUBLISHED_PARAMS = {0.4: 0.983, 0.5: 1.43, 1.0: 4.88, 2.0: 17.91, 3.0: 39.09, 4.0: 68.43}


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> Tagger:
    torch.set_num_threads(2)
    return load_model("mn04_as")


def golden(golden_dir: Path, name: str) -> dict:
    with np.load(golden_dir / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", [*GOLDEN_32K, "metro_station-paris__soxr_hq"])
def test_mel_and_logits_match_official(tagger: Tagger, golden_dir: Path, name: str) -> None:
    g = golden(golden_dir, name)
    with torch.inference_mode():
        mel = tagger.front_end(torch.from_numpy(g["waveform"])[None])
        assert mel.shape == (1, 1, 128, g["mel"].shape[1])
        assert np.abs(mel[0, 0].numpy() - g["mel"]).max() < 1e-4
        logits, embedding = tagger.net(torch.from_numpy(g["mel"])[None, None])
        assert np.abs(logits[0].numpy() - g["logits"]).max() < 1e-4
        assert np.abs(embedding[0].numpy() - g["features"]).max() < 1e-4
        fmap = tagger.net.feature_map(torch.from_numpy(g["mel"])[None, None])
        assert np.abs(fmap[0].numpy() - g["fmap_final"]).max() < 1e-4
        # the head applied per output frame after averaging over frequency (no time pooling)
        frame_logits, _ = tagger.net.frame_logits(fmap, pool_frames=1)
        assert np.abs(frame_logits[0].numpy() - g["framewise_logits"]).max() < 1e-3


@pytest.mark.parametrize("name", GOLDEN_32K)
def test_end_to_end_from_files(tagger: Tagger, golden_dir: Path, name: str) -> None:
    g = golden(golden_dir, name)
    audio = load(golden_dir / str(g["source"]))
    assert audio.shape == g["waveform"].shape
    probs, _ = tagger.clip_scores(audio)
    logits = np.log(probs) - np.log1p(-probs)
    assert np.abs(logits - g["logits"]).max() < 1e-4
    assert list(np.argsort(-probs)[:3]) == list(g["top10_idx"][:3])


def test_resampled_44k_file_matches_soxr_golden(tagger: Tagger, golden_dir: Path) -> None:
    g = golden(golden_dir, "metro_station-paris__soxr_hq")
    audio = load(golden_dir / "audio" / "metro_station-paris.wav")
    assert int(g["orig_sr"]) == 44100
    assert len(audio) == int(g["n_samples"])
    probs, _ = tagger.clip_scores(audio)
    logits = np.log(probs) - np.log1p(-probs)
    assert np.abs(logits - g["logits"]).max() < 1e-3
    assert tagger.labels[int(np.argmax(probs))].name == "Train"


def test_official_windows(tagger: Tagger, golden_dir: Path) -> None:
    g = golden(golden_dir, "concat4")
    wave = g["waveform"]
    win = int(g["window_len_s"] * 32000)
    for i, start in enumerate(g["window_start_s"]):
        s = int(start * 32000)
        piece = np.zeros(win, np.float32)
        chunk = wave[s : s + win]
        piece[: len(chunk)] = chunk
        probs, emb = tagger.clip_scores(piece)
        logits = np.log(probs) - np.log1p(-probs)
        assert np.abs(logits - g["window_logits"][i]).max() < 1e-4
        assert np.abs(emb - g["window_features"][i]).max() < 1e-4


def test_filterbank_shape_and_edges() -> None:
    bank = mel_filterbank()
    assert bank.shape == (128, 513)
    assert np.all(bank[:, 512] == 0)  # Nyquist bin unused
    assert np.isclose(bank.max(), 1.0, atol=0.02)  # peak ~1, no area normalisation
    assert bank[:, 481:].sum() == 0  # nothing above 15 kHz (bin 480 = 15 kHz)
    assert n_frames(320_000) == 1000 and n_frames(320_001) == 1001


@pytest.mark.parametrize("width", sorted(PUBLISHED_PARAMS))
def test_family_parameter_counts(width: float) -> None:
    count = count_parameters(MobileNet(width))
    assert round(count / 1e6, 2 if width < 10 else 1) == pytest.approx(
        PUBLISHED_PARAMS[width], abs=0.006
    )


def test_architecture_of_mn04_matches_notes() -> None:
    arch = Architecture.for_width(0.4)
    assert arch.stem == 8 and arch.last_conv == 384 and arch.head_hidden == 512
    expanded = [b[2] for b in arch.blocks]
    assert expanded == [8, 24, 32, 32, 48, 48, 96, 80, 72, 72, 192, 272, 272, 384, 384]
    outs = [b[3] for b in arch.blocks]
    assert outs == [8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 48, 48, 64, 64, 64]


def test_checkpoint_width_inferred(model_dir: Path) -> None:
    state = torch.load(model_dir / "mn04_as_mAP_432.pt", weights_only=True)
    assert infer_width(state, [0.1, 0.2, 0.4, 0.5, 1.0]) == 0.4


# ------------------------------------------------------------------------------- scoring
def test_local_scoring_is_independent_of_chunking(tagger: Tagger, golden_dir: Path) -> None:
    wave = golden(golden_dir, "concat4")["waveform"]
    wave = np.concatenate([wave, wave[::-1], wave[:500_000]])
    whole = FrameScorer(tagger.net, tagger.front_end, ScoringOptions(block_frames=10_000))
    reference = whole.score(wave)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.integers(0, len(wave), 12))
    chunks = np.split(wave, cuts)
    blocked = FrameScorer(tagger.net, tagger.front_end, ScoringOptions(block_frames=64))
    result = blocked.score(iter(chunks))
    assert result.scores.shape == reference.scores.shape
    assert result.scores.shape[0] == int(np.ceil(len(wave) / 10240))
    # default 7.7 s margins: within 5e-4 of one pass over the whole file (measured 2e-4) ...
    assert np.abs(result.scores - reference.scores).max() < 5e-4
    # ... and wider margins converge to it
    wide = FrameScorer(
        tagger.net, tagger.front_end, ScoringOptions(block_frames=64, margin_frames=32)
    )
    assert np.abs(wide.score(iter(chunks)).scores - reference.scores).max() < 1e-4
    assert result.hop == FRAME_HOP
    assert result.duration == pytest.approx(len(wave) / 32000)


def test_local_blocks_see_the_whole_file_log_mel(tagger: Tagger, golden_dir: Path) -> None:
    """Blocks overlap by their margins and reuse the frames the previous block computed: every
    block's log-mel must still be the whole file's, frame for frame, at the right place."""
    wave = golden(golden_dir, "concat4")["waveform"]
    wave = np.concatenate([wave, wave[::-1]])[: 75 * 32000 + 1234]
    with torch.inference_mode():
        whole = tagger.front_end(torch.from_numpy(wave)[None])
    opts = ScoringOptions(block_frames=32, margin_frames=8)
    scorer = FrameScorer(tagger.net, tagger.front_end, opts)
    seen: list[torch.Tensor] = []
    feature_map = tagger.net.feature_map
    try:
        tagger.net.feature_map = lambda mel: seen.append(mel.clone()) or feature_map(mel)
        chunks = np.split(wave, np.sort(np.random.default_rng(2).integers(0, len(wave), 9)))
        scorer.score(iter(chunks))
    finally:
        del tagger.net.feature_map
    assert len(seen) == int(np.ceil(np.ceil(len(wave) / 10240) / 32))
    for k, mel in enumerate(seen):
        start = 32 * max(k * 32 - 8, 0)
        expected = whole[..., start : start + mel.shape[-1]]
        assert mel.shape == expected.shape
        torch.testing.assert_close(mel, expected, atol=1e-5, rtol=0)


def test_local_scoring_has_bounded_context(tagger: Tagger, golden_dir: Path) -> None:
    wave = np.tile(golden(golden_dir, "concat4")["waveform"], 2)  # 80 s
    changed = wave.copy()
    changed[60 * 32000 :] = 0.5 * np.sign(np.sin(np.arange(20 * 32000) * 0.05))  # 60..80 s
    scorer = tagger.scorer(ScoringOptions())
    a, b = scorer.score(wave).scores, scorer.score(changed).scores
    early = int(40 / FRAME_HOP)  # frames before 40 s: 20 s away from the change
    assert np.abs(a[:early] - b[:early]).max() < 1e-5
    assert np.abs(a[-10:] - b[-10:]).max() > 0.1  # where the audio changed, scores change


def test_window_scoring_equals_clip_level(tagger: Tagger, golden_dir: Path) -> None:
    wave = golden(golden_dir, "typing")["waveform"]
    opts = ScoringOptions(method="window", window=3.0, hop=1.0, block_frames=8)
    result = tagger.scorer(opts).score(iter(np.array_split(wave, 7)))
    assert result.scores.shape == (10, 527)
    with torch.inference_mode():
        mel = tagger.front_end(torch.from_numpy(wave)[None])
        for i in (0, 4, 9):
            centre = int((i + 0.5) * 100)
            start = min(max(centre - 150, 0), 1000 - 300)
            logits, _ = tagger.net(mel[..., start : start + 300])
            assert np.abs(result.scores[i] - torch.sigmoid(logits[0]).numpy()).max() < 1e-4


def test_local_scores_find_the_segments(tagger: Tagger, golden_dir: Path) -> None:
    """On speech | music | typing | metro, each class is found in its own 10 s part."""
    g = golden(golden_dir, "concat4")
    scores = tagger.frame_scores(g["waveform"]).scores
    names = [label.name for label in tagger.labels]
    expected = ["Speech", "Music", "Computer keyboard", "Train"]
    for part, name in enumerate(expected):
        column = scores[:, names.index(name)]
        means = [
            column[int((p * 10 + 1.5) / FRAME_HOP) : int((p * 10 + 8.5) / FRAME_HOP)].mean()
            for p in range(4)
        ]
        assert means[part] > 0.15, (name, means)
        assert means[part] > 3 * max(m for p, m in enumerate(means) if p != part), (name, means)


def test_fused_batchnorm_gives_the_same_outputs(model_dir: Path, golden_dir: Path) -> None:
    from earmark.model import build_model, fuse_batchnorm

    state = torch.load(model_dir / "mn04_as_mAP_432.pt", weights_only=True)
    plain, fused = build_model(0.4, state), fuse_batchnorm(build_model(0.4, state))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    mel = torch.from_numpy(golden(golden_dir, "speech")["mel"])[None, None]
    with torch.inference_mode():
        assert torch.allclose(plain(mel)[0], fused(mel)[0], atol=1e-4)
        fused.set_se_context(15)
        plain.set_se_context(15)
        assert torch.allclose(plain.feature_map(mel), fused.feature_map(mel), atol=1e-4)
