{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "apitap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of the release's objects: the release name, plus the chart name unless it already holds it. */}}
{{- define "apitap.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "apitap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apitap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "apitap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "apitap.selectorLabels" . }}
app.kubernetes.io/component: sensor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "apitap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "apitap.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "apitap.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Secret holding the Kafka SASL password: the chart's own when a password is given, else
the existing one; empty when there is none. */}}
{{- define "apitap.kafkaSecretName" -}}
{{- if .Values.kafka.sasl.password -}}
{{- printf "%s-kafka" (include "apitap.fullname" .) -}}
{{- else if .Values.kafka.sasl.existingSecret -}}
{{- .Values.kafka.sasl.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* apitap.toml rendered from the values (see `apitap config example` for every key). */}}
{{- define "apitap.config" -}}
# Rendered by the apitap Helm chart.
{{- with .Values.user }}
user = {{ . | quote }}
{{- end }}

[capture]
interface = {{ .Values.capture.interface | quote }}
bpf = {{ .Values.capture.bpf | quote }}
snaplen = {{ int64 .Values.capture.snaplen }}
promisc = {{ .Values.capture.promisc }}
buffer_mb = {{ int64 .Values.capture.bufferMb }}
{{- if .Values.capture.vxlanListen }}
vxlan_listen = {{ .Values.capture.vxlanListen | quote }}
{{- end }}
{{- if .Values.capture.geneveListen }}
geneve_listen = {{ .Values.capture.geneveListen | quote }}
{{- end }}

[pipeline]
workers = {{ int64 .Values.pipeline.workers }}

[flows]
max_flows = {{ int64 .Values.flows.maxFlows }}
idle_timeout_secs = {{ int64 .Values.flows.idleTimeoutSecs }}

[parser]
body_prefix_bytes = {{ int64 .Values.parser.bodyPrefixBytes }}

[redaction]
mode = {{ .Values.redaction.mode | quote }}
{{- if .Values.redaction.salt }}
salt = {{ .Values.redaction.salt | quote }}
{{- end }}

[outputs]
{{- $targets := list }}
{{- if .Values.kafka.enabled }}
{{- $targets = append $targets (printf "kafka://%s/%s" (join "," .Values.kafka.brokers) .Values.kafka.topic) }}
{{- end }}
{{- range .Values.outputs.extraTargets }}
{{- $targets = append $targets . }}
{{- end }}
{{- if not $targets }}
{{- $targets = list "stdout" }}
{{- end }}
targets = [{{ range $i, $t := $targets }}{{ if $i }}, {{ end }}{{ $t | quote }}{{ end }}]
inventory = {{ .Values.outputs.inventory | quote }}
inventory_interval_secs = {{ int64 .Values.outputs.inventoryIntervalSecs }}
openapi = {{ .Values.outputs.openapi | quote }}
{{- if .Values.kafka.enabled }}

[kafka]
compression = {{ .Values.kafka.compression | quote }}
acks = {{ .Values.kafka.acks | quote }}

[kafka.options]
{{- range $key, $value := .Values.kafka.options }}
{{ $key | quote }} = {{ $value | toString | quote }}
{{- end }}
{{- end }}

[metrics]
listen = {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}

[log]
format = {{ .Values.log.format | quote }}
level = {{ .Values.log.level | quote }}
{{- with .Values.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}
