"""The MQTT sink (paho-mqtt, the ``listen`` extra): events on ``<prefix>/<source>/<label>`` and a
retained ``online``/``offline`` status per source, set as its Last Will."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from earmark.listen.delivery import Counters, event_json, topic_slug
from earmark.listen.live_events import LiveEvent

log = logging.getLogger(__name__)

PORT = 1883
"""The broker's port without TLS."""
TLS_PORT = 8883
"""The broker's port with TLS (``mqtts://``)."""
QUEUE_LIMIT = 10_000
"""Events kept in memory per source while the broker is away; past it they are dropped."""
KEEPALIVE = 30
"""Seconds between the keep-alive pings that let the broker notice a lost connection (and
publish the Last Will)."""
RECONNECT_MAX = 30
"""The longest wait in seconds between two reconnection tries (from 1 s, doubled each time)."""
ONLINE = "online"
OFFLINE = "offline"
FORBIDDEN_TOPIC_CHARS = ("+", "#", "\0")


def check_prefix(prefix: str) -> str:
    """``prefix`` without surrounding slashes; ValueError for MQTT wildcards or empty levels."""
    cleaned = prefix.strip("/")
    if not cleaned:
        raise ValueError("the MQTT topic prefix is empty")
    if any(char in cleaned for char in FORBIDDEN_TOPIC_CHARS):
        raise ValueError(f"the MQTT topic prefix {prefix!r} holds a wildcard (+ or #)")
    if "" in cleaned.split("/"):
        raise ValueError(f"the MQTT topic prefix {prefix!r} has an empty level (//)")
    return cleaned


@dataclass
class TlsOptions:
    """TLS to the broker: CA bundle (system default when None), client certificate and key, and
    ``insecure`` to skip the host name check."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass
class SourceLink:
    """One broker connection per source, so that each source has its own Last Will."""

    source: str
    status_topic: str
    client: Any
    events: set[int] = field(default_factory=set)
    statuses: set[int] = field(default_factory=set)
    early: set[int] = field(default_factory=set)
    connected: bool = False


class MqttSink:
    """Publishes each event's JSON on ``<prefix>/<source-slug>/<label-slug>`` (QoS 1 by default,
    not retained), and ``online`` on ``<prefix>/<source-slug>/status`` (retained) when
    connected; ``offline`` is set there as the Last Will and published on close.

    paho's network thread reconnects with backoff; events emitted while the broker is away are
    queued in memory (at most ``queue_limit`` per source, then dropped with an error) and
    published after the reconnection.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        prefix: str = "earmark",
        *,
        username: str | None = None,
        password: str | None = None,
        tls: TlsOptions | None = None,
        qos: int = 1,
        client_id: str | None = None,
        sources: Iterable[str] = (),
        kinds: frozenset[str] = frozenset({"started", "ended"}),
        queue_limit: int = QUEUE_LIMIT,
        keepalive: int = KEEPALIVE,
        reconnect_max: int = RECONNECT_MAX,
    ) -> None:
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise ValueError(
                "the MQTT sink needs paho-mqtt: pip install 'earmark[listen]'"
            ) from None
        if qos not in (0, 1, 2):
            raise ValueError(f"MQTT qos must be 0, 1 or 2, not {qos}")
        self.host = host
        self.port = port or (TLS_PORT if tls else PORT)
        self.prefix = check_prefix(prefix)
        self.username = username
        self.password = password
        self.tls = tls
        self.qos = qos
        self.client_id = client_id
        self.kinds = kinds
        self.queue_limit = queue_limit
        self.keepalive = keepalive
        self.reconnect_max = reconnect_max
        scheme = "mqtts" if tls else "mqtt"
        self.name = f"{scheme}://{host}:{self.port}/{self.prefix}"
        self.counters = Counters("connects")
        self.lock = threading.Condition()
        self.links: dict[str, SourceLink] = {}
        self.closed = False
        for source in sources:
            self._link(source)

    # -- public -------------------------------------------------------------------------------

    def topic(self, event: LiveEvent) -> str:
        """The topic of ``event``: ``<prefix>/<source-slug>/<label-slug>``."""
        return f"{self.prefix}/{topic_slug(event.source)}/{topic_slug(event.label)}"

    def status_topic(self, source: str) -> str:
        """The retained status topic of ``source``: ``<prefix>/<source-slug>/status``."""
        return f"{self.prefix}/{topic_slug(source)}/status"

    def emit(self, event: LiveEvent) -> None:
        """Hand ``event`` to paho (queued while disconnected); returns at once."""
        if event.kind not in self.kinds:
            return
        if self.closed:
            self.counters.add("dropped")
            log.error("%s: event emitted after close, not published: %s", self.name, event.id)
            return
        link = self._link(event.source)
        self._publish(link, self.topic(event), event_json(event), retain=False, status=False)

    def close(self, timeout: float = 10.0) -> None:
        """Publish ``offline`` for every source, wait up to ``timeout`` seconds for what is in
        flight, then disconnect (events still queued are lost, and counted as dropped)."""
        if self.closed:
            return
        self.closed = True
        for link in self.links.values():
            self._publish(link, link.status_topic, OFFLINE, retain=True, status=True)
        deadline = time.monotonic() + timeout
        with self.lock:
            self.lock.wait_for(
                lambda: all(not ln.events and not ln.statuses for ln in self.links.values()),
                timeout=max(0.0, deadline - time.monotonic()),
            )
            left = sum(len(link.events) for link in self.links.values())
        if left:
            self.counters.add("dropped", left)
            self.counters.set("pending", 0)
            log.error("%s: %d events were not acknowledged before close", self.name, left)
        for link in self.links.values():
            link.client.disconnect()
            link.client.loop_stop()

    def stats(self) -> dict[str, object]:
        """Counters: delivered (acknowledged), failed_attempts (lost connections and failed
        connects), pending (queued or in flight), dropped, connects."""
        return self.counters.snapshot()

    # -- paho ---------------------------------------------------------------------------------

    def _link(self, source: str) -> SourceLink:
        link = self.links.get(source)
        if link is not None:
            return link
        import paho.mqtt.client as paho

        slug = topic_slug(source)
        client_id = f"{self.client_id or 'earmark'}-{slug}"[:64]
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            userdata=source,
        )
        link = SourceLink(source, self.status_topic(source), client)
        self.links[source] = link
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set(
                ca_certs=self.tls.ca_certs, certfile=self.tls.certfile, keyfile=self.tls.keyfile
            )
            client.tls_insecure_set(self.tls.insecure)
        client.will_set(link.status_topic, OFFLINE, qos=1, retain=True)
        client.max_queued_messages_set(self.queue_limit)
        client.reconnect_delay_set(min_delay=1, max_delay=self.reconnect_max)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(self.host, self.port, keepalive=self.keepalive)
        client.loop_start()
        return link

    def _publish(
        self, link: SourceLink, topic: str, payload: str, retain: bool, status: bool
    ) -> None:
        import paho.mqtt.client as paho

        qos = 1 if status else self.qos
        info = link.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            if not status:
                self.counters.add("dropped")
                log.error(
                    "%s: %d events queued for %s while the broker is away; dropped one on %s",
                    self.name,
                    len(link.events),
                    link.source,
                    topic,
                )
            return
        if qos == 0:
            if not status:
                self.counters.add("delivered")
            return
        with self.lock:
            if info.mid in link.early:
                link.early.discard(info.mid)
                if not status:
                    self.counters.add("delivered")
            else:
                (link.statuses if status else link.events).add(info.mid)
            self._update_pending()

    def _update_pending(self) -> None:
        self.counters.set("pending", sum(len(link.events) for link in self.links.values()))

    def _on_connect(self, client: Any, source: str, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.counters.add("failed_attempts")
            log.warning(
                "%s: the broker refused the connection for %s: %s", self.name, source, reason
            )
            return
        self.counters.add("connects")
        link = self.links[source]
        link.connected = True
        log.info("%s: connected for %s", self.name, source)
        if not self.closed:
            self._publish(link, link.status_topic, ONLINE, retain=True, status=True)

    def _on_connect_fail(self, client: Any, source: str) -> None:
        self.counters.add("failed_attempts")
        log.warning("%s: cannot reach the broker for %s; retrying", self.name, source)

    def _on_disconnect(self, client: Any, source: str, flags: Any, reason: Any, props: Any) -> None:
        link = self.links.get(source)
        if link is not None:
            link.connected = False
        if reason.is_failure:
            self.counters.add("failed_attempts")
            log.warning("%s: lost the broker for %s (%s); reconnecting", self.name, source, reason)

    def _on_publish(self, client: Any, source: str, mid: int, reason: Any, props: Any) -> None:
        with self.lock:
            link = self.links[source]
            if mid in link.events:
                link.events.discard(mid)
                self.counters.add("delivered")
            elif mid in link.statuses:
                link.statuses.discard(mid)
            else:
                link.early.add(mid)
            self._update_pending()
            self.lock.notify_all()
