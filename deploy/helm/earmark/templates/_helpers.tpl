{{/* Names ---------------------------------------------------------------------------------- */}}
{{- define "earmark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "earmark.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "earmark.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: common, and per component (api, worker, redis, postgresql, test) ---------------- */}}
{{- define "earmark.labels" -}}
helm.sh/chart: {{ include "earmark.chart" . }}
app.kubernetes.io/name: {{ include "earmark.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: earmark
{{- end }}

{{- define "earmark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "earmark.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "earmark.componentLabels" -}}
{{ include "earmark.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "earmark.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "earmark.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images --------------------------------------------------------------------------------- */}}
{{- define "earmark.image" -}}
{{- $img := index .root.Values.image .component -}}
{{- $repo := $img.repository -}}
{{- if .root.Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $img.repository }}{{ end -}}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end }}
{{- end }}

{{/* Secret holding bootstrap-keys, api-key, database-url, broker-url ------------------------- */}}
{{- define "earmark.secretName" -}}
{{- default (include "earmark.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "earmark.redisHost" -}}
{{- printf "%s-redis" (include "earmark.fullname" .) }}
{{- end }}

{{- define "earmark.postgresqlHost" -}}
{{- printf "%s-postgresql" (include "earmark.fullname" .) }}
{{- end }}

{{/* Value of a key of the chart's Secret as installed (so generated secrets survive upgrades) */}}
{{- define "earmark.existingSecretValue" -}}
{{- $secret := lookup "v1" "Secret" .root.Release.Namespace (include "earmark.fullname" .root) -}}
{{- if and $secret $secret.data (hasKey $secret.data .key) -}}
{{- index $secret.data .key | b64dec -}}
{{- end -}}
{{- end }}

{{- define "earmark.postgresqlPassword" -}}
{{- if .Values.postgresql.auth.password }}
{{- .Values.postgresql.auth.password }}
{{- else }}
{{- $old := include "earmark.existingSecretValue" (dict "root" . "key" "postgres-password") }}
{{- default (randAlphaNum 32) $old }}
{{- end }}
{{- end }}

{{/* Environment shared by API, workers and the init container ------------------------------ */}}
{{- define "earmark.env" -}}
- name: EARMARK_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "earmark.secretName" . }}
      key: database-url
- name: EARMARK_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "earmark.secretName" . }}
      key: broker-url
{{- range $name, $value := .Values.config.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "earmark.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "earmark.containerSecurityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end }}

{{/* Volume sources of the storage and model volumes --------------------------------------- */}}
{{- define "earmark.storageVolume" -}}
{{- if .Values.storage.persistence.enabled }}
persistentVolumeClaim:
  claimName: {{ default (printf "%s-storage" (include "earmark.fullname" .)) .Values.storage.persistence.existingClaim }}
{{- else }}
emptyDir: {}
{{- end }}
{{- end }}

{{- define "earmark.modelsVolume" -}}
{{- if .Values.models.persistence.enabled }}
persistentVolumeClaim:
  claimName: {{ default (printf "%s-models" (include "earmark.fullname" .)) .Values.models.persistence.existingClaim }}
{{- else }}
emptyDir: {}
{{- end }}
{{- end }}

{{/* Init container of the worker and listener pods: model files into the models volume, each
verified against its pinned sha256 (a no-op when present and intact; with models.offline only
verified, never downloaded). Needs the volumes `models` and `tmp`. */}}
{{- define "earmark.fetchModelsContainer" -}}
# Model files into the models volume, each verified against its pinned sha256 (a no-op when
# present and intact; with models.offline only verified, never downloaded).
- name: fetch-models
  image: {{ include "earmark.image" (dict "root" . "component" "worker") | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - models
    - fetch
    {{- range .Values.models.names }}
    - {{ . | quote }}
    {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "earmark.fullname" . }}
  resources:
    requests:
      cpu: 100m
      memory: 128Mi
    limits:
      cpu: 500m
      memory: 256Mi
  securityContext:
    {{- include "earmark.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /models
    - name: tmp
      mountPath: /tmp
{{- end }}
