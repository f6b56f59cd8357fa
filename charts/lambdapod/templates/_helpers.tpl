{{/* The chart's name, "lambdapod" unless nameOverride says otherwise. */}}
{{- define "lambdapod.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when
it contains the chart name, else "<release>-<chart>". Release "lambdapod"
gives the names of config/default (lambdapod-manager, lambdapod-activator...).
*/}}
{{- define "lambdapod.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lambdapod.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "manager"). */}}
{{- define "lambdapod.labels" -}}
helm.sh/chart: {{ include "lambdapod.chart" .ctx }}
{{ include "lambdapod.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: lambdapod
{{- end }}

{{/* Labels that select a component's pods. */}}
{{- define "lambdapod.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lambdapod.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "lambdapod.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end -}}
{{- end }}

{{/*
The activator's base URL, for functions' status.url: manager.activatorURL, else
the activator Ingress host, else the activator Service.
*/}}
{{- define "lambdapod.activatorURL" -}}
{{- $ing := .Values.activator.ingress }}
{{- if .Values.manager.activatorURL }}
{{- .Values.manager.activatorURL }}
{{- else if and $ing.enabled $ing.host }}
{{- printf "%s://%s" (ternary "https" "http" $ing.tls.enabled) $ing.host }}
{{- else }}
{{- $port := int .Values.activator.service.port }}
{{- printf "http://%s-activator.%s.svc" (include "lambdapod.fullname" .) .Release.Namespace }}
{{- if ne $port 80 }}:{{ $port }}{{ end }}
{{- end }}
{{- end }}

{{/* The autoscaler's stats endpoint in the manager, for the activator. */}}
{{- define "lambdapod.autoscalerURL" -}}
{{- printf "http://%s-autoscaler.%s.svc:8083/v1/stats" (include "lambdapod.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
An object of a generated file under files/, as JSON. Call with (dict "ctx" $
"path" "files/..." "kind" "Role"): the file's one document of that kind; without
"kind", its only document. A file may hold several documents (the manager's
role file has a ClusterRole and a Role), and fromYaml alone would read the
first and drop the others without a word, so each is read and the render
fails if the file is missing, a document does not parse, or there is not
exactly one document to return.
*/}}
{{- define "lambdapod.generated" -}}
{{- $raw := .ctx.Files.Get .path }}
{{- if not $raw }}
{{- fail (printf "%s is missing from the chart: run `make chart-sync`" .path) }}
{{- end }}
{{- $found := list }}
{{- $count := 0 }}
{{- range regexSplit "(?m)^---[ \t]*$" $raw -1 }}
{{- $obj := fromYaml . }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "%s does not parse: %s" $.path $obj.Error) }}
{{- end }}
{{- if $obj }}
{{- $count = add1 $count }}
{{- if or (not $.kind) (eq $.kind (toString $obj.kind)) }}
{{- $found = append $found $obj }}
{{- end }}
{{- end }}
{{- end }}
{{- if ne (len $found) 1 }}
{{- fail (printf "%s has %d documents of kind %q (of %d): want exactly one" .path (len $found) (default "any" .kind) $count) }}
{{- end }}
{{- toJson (first $found) }}
{{- end }}

{{/*
The build ConfigMap's data, as JSON: build.config as strings, helperImage
defaulting to the manager's image.
*/}}
{{- define "lambdapod.buildConfig" -}}
{{- $data := dict }}
{{- range $k, $v := .Values.build.config }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
{{- if not (hasKey $data "helperImage") }}
{{- $_ := set $data "helperImage" (include "lambdapod.image" (dict "ctx" . "image" .Values.manager.image)) }}
{{- end }}
{{- toJson $data }}
{{- end }}

{{/* "true" when the chart runs its own NATS server: eventQueue.enabled without eventQueue.url. */}}
{{- define "lambdapod.natsEnabled" -}}
{{- if and .Values.eventQueue.enabled (not .Values.eventQueue.url) }}true{{ end }}
{{- end }}

{{/*
The NATS URL of the activators' -event-queue and the manager's --event-queue:
eventQueue.url, else the chart's NATS client Service. Empty without
eventQueue.enabled.
*/}}
{{- define "lambdapod.eventQueueURL" -}}
{{- if .Values.eventQueue.enabled }}
{{- if .Values.eventQueue.url }}
{{- .Values.eventQueue.url }}
{{- else }}
{{- printf "nats://%s-nats.%s.svc:4222" (include "lambdapod.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/* The NATS server's configuration file (nats.conf). */}}
{{- define "lambdapod.natsConfig" -}}
{{- $fullname := include "lambdapod.fullname" . }}
{{- $n := .Values.nats -}}
# NATS with JetStream for lambdapod's durable Event invocations
# (docs/async.md). Rendered by the chart from the nats.* values.
server_name: $POD_NAME
listen: 0.0.0.0:4222
http: 0.0.0.0:8222
# An Event carries up to 1 MiB of payload plus its headers.
max_payload: {{ $n.maxPayload }}
jetstream {
  store_dir: /data
  {{- with $n.jetstream.maxFileStore }}
  max_file_store: {{ . }}
  {{- end }}
  max_memory_store: {{ $n.jetstream.maxMemoryStore }}
}
{{- if gt (int $n.replicas) 1 }}
cluster {
  name: {{ $fullname }}-nats
  listen: 0.0.0.0:6222
  routes: [
    {{- range $i := until (int $n.replicas) }}
    nats://{{ $fullname }}-nats-{{ $i }}.{{ $fullname }}-nats-headless.{{ $.Release.Namespace }}.svc:6222
    {{- end }}
  ]
}
{{- end }}
{{- end }}
