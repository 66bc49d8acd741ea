{{/*
The chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "vision-events-consumer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the resources: fullnameOverride, else the release name when it already contains
the chart name, else "<release>-<chart>"; truncated to 63 characters.
*/}}
{{- define "vision-events-consumer.fullname" -}}
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

{{/*
The namespace of every resource: namespaceOverride, else the release namespace.
*/}}
{{- define "vision-events-consumer.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"<chart>-<version>" for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "vision-events-consumer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource: the selector labels, the chart, version and manager, commonLabels.
Never used as a selector: helm.sh/chart and the version change on upgrade.
*/}}
{{- define "vision-events-consumer.labels" -}}
helm.sh/chart: {{ include "vision-events-consumer.chart" . }}
{{ include "vision-events-consumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vision-events
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (a StatefulSet's selector is immutable).
*/}}
{{- define "vision-events-consumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vision-events-consumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount's name: serviceAccount.name, else the full name when the chart creates it, else "default".
*/}}
{{- define "vision-events-consumer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vision-events-consumer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: registry/repository, then @digest when given, else :tag (appVersion by default).
*/}}
{{- define "vision-events-consumer.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .Values.image.registry) .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
The Secret the secret environment variables come from: secrets.existingSecret, else the chart's own.
*/}}
{{- define "vision-events-consumer.secretName" -}}
{{- default (include "vision-events-consumer.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Whether the chart creates its own Secret: no existingSecret and at least one secret value given.
Returns "true" or "".
*/}}
{{- define "vision-events-consumer.createSecret" -}}
{{- $s := .Values.secrets }}
{{- if and (not $s.existingSecret) (or $s.roboflowApiKey $s.eventStoreApiKey $s.mqttPassword $s.kafkaSaslPassword) -}}
true
{{- end }}
{{- end }}

{{/*
The secrets the consumer reads, as a list of [value key in .Values.secrets, environment variable].
One list, so the Secret, the env wiring and the docs cannot disagree.
*/}}
{{- define "vision-events-consumer.secretEnv" -}}
- [roboflowApiKey, ROBOFLOW_API_KEY]
- [eventStoreApiKey, VEC_SINK__LOCAL__API_KEY]
- [mqttPassword, VEC_SOURCE__MQTT__PASSWORD]
- [kafkaSaslPassword, VEC_SOURCE__KAFKA__SASL_PASSWORD]
{{- end }}

{{/*
The env entries for the secrets, each a secretKeyRef. With existingSecret every key with a name is
wired (optional: a missing key sets no variable); with the chart's Secret only the keys given a value.
*/}}
{{- define "vision-events-consumer.secretEnvVars" -}}
{{- $secretName := include "vision-events-consumer.secretName" . }}
{{- range $pair := include "vision-events-consumer.secretEnv" . | fromYamlArray }}
{{- $field := index $pair 0 }}
{{- $key := index $.Values.secrets.keys $field }}
{{- $wanted := and $key (or $.Values.secrets.existingSecret (index $.Values.secrets $field)) }}
{{- if $wanted }}
- name: {{ index $pair 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
      {{- if $.Values.secrets.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The metrics port: config.http.port (the consumer's own setting), 9108 by default.
*/}}
{{- define "vision-events-consumer.metricsPort" -}}
{{- dig "http" "port" 9108 .Values.config | int }}
{{- end }}

{{/*
The drain deadline in whole seconds (config.shutdown_deadline_seconds, 25 by default, rounded up).
*/}}
{{- define "vision-events-consumer.drainDeadline" -}}
{{- dig "shutdown_deadline_seconds" 25 .Values.config | float64 | ceil | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the value given, else the drain deadline plus the margin. Fails the
render when it does not exceed the deadline: Kubernetes would SIGKILL a draining consumer.
*/}}
{{- define "vision-events-consumer.terminationGracePeriodSeconds" -}}
{{- $deadline := dig "shutdown_deadline_seconds" 25 .Values.config | float64 }}
{{- $grace := 0 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- $grace = add (include "vision-events-consumer.drainDeadline" . | int) (.Values.terminationGraceMarginSeconds | int) }}
{{- else }}
{{- $grace = .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- if le (float64 $grace) $deadline }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than config.shutdown_deadline_seconds (%v): the pod would be killed while it drains" (int $grace) $deadline) }}
{{- end }}
{{- $grace }}
{{- end }}

{{/*
The settings file: config with routes pointing at the mounted routes file.
*/}}
{{- define "vision-events-consumer.settings" -}}
{{- $settings := deepCopy .Values.config }}
{{- $_ := set $settings "routes" "/etc/vision-events/routes.yaml" }}
{{- toYaml $settings }}
{{- end }}

{{/*
Label matchers that select this release's series in PromQL: metrics.prometheusRule.selector, else
job and namespace as the ServiceMonitor/PodMonitor set them.
*/}}
{{- define "vision-events-consumer.promSelector" -}}
{{- default (printf "job=%q,namespace=%q" (include "vision-events-consumer.fullname" .) (include "vision-events-consumer.namespace" .)) .Values.metrics.prometheusRule.selector }}
{{- end }}

{{/*
Whether replicas are managed by an autoscaler (HPA or KEDA): the StatefulSet then sets no replicas.
*/}}
{{- define "vision-events-consumer.autoscaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled -}}
true
{{- end }}
{{- end }}

{{/*
Whether the data volume (/var/lib/vision-events) is a PersistentVolumeClaim: persistence.enabled, or
the spool is on (a spool on an emptyDir would go with the pod, and its events with it). "true" or "".
*/}}
{{- define "vision-events-consumer.persistentData" -}}
{{- if or .Values.persistence.enabled (dig "spool" "enabled" false .Values.config) -}}
true
{{- end }}
{{- end }}

{{/*
A Kubernetes quantity ("1Gi", "500M", "2048") in bytes.
*/}}
{{- define "vision-events-consumer.quantityBytes" -}}
{{- $text := toString . }}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 }}
{{- $number := regexFind `^[0-9]+(\.[0-9]+)?` $text }}
{{- $unit := trimPrefix $number $text }}
{{- if or (not $number) (not (hasKey $units $unit)) }}
{{- fail (printf "persistence.size %q: expected a quantity such as 1Gi or 500Mi" $text) }}
{{- end }}
{{- mulf (float64 $number) (index $units $unit) }}
{{- end }}

{{/*
Rendering-time checks of combinations the schema cannot express.
*/}}
{{- define "vision-events-consumer.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled both scale the StatefulSet: enable one" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor and metrics.podMonitor would scrape every pod twice: enable one" }}
{{- end }}
{{- $multi := or (gt (int .Values.replicas) 1) (include "vision-events-consumer.autoscaled" .) }}
{{- if and $multi (dig "source" "mqtt" "client_id" "" .Values.config) }}
{{- fail "config.source.mqtt.client_id is fixed but there can be several replicas: they would take each other's MQTT session. Leave it unset (it defaults to vision-events-consumer-<pod name>)" }}
{{- end }}
{{- if and .Values.keda.enabled (ne (dig "source" "type" "file" .Values.config) "kafka") }}
{{- fail "keda scales on Kafka consumer-group lag: it needs config.source.type kafka" }}
{{- end }}
{{- $_ := include "vision-events-consumer.terminationGracePeriodSeconds" . }}
{{- if dig "spool" "enabled" false .Values.config }}
{{- $path := dig "spool" "path" "spool.db" .Values.config | toString }}
{{- if not (hasPrefix "/var/lib/vision-events/" $path) }}
{{- fail (printf "config.spool.path %q is not on the data volume: put it under /var/lib/vision-events/ (the only persistent, writable place)" $path) }}
{{- end }}
{{- $maxBytes := dig "spool" "max_bytes" 1073741824 .Values.config | float64 }}
{{- $volume := include "vision-events-consumer.quantityBytes" .Values.persistence.size | float64 }}
{{- if gt $maxBytes (mulf $volume 0.8) }}
{{- fail (printf "config.spool.max_bytes (%.0f) is more than 80%% of persistence.size (%s): the volume would fill before the spool's bound (SQLite's overhead and the dead-letter file need room). Lower it or enlarge the volume" $maxBytes (toString .Values.persistence.size)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuse, at render time, an upgrade that turns the data volume's claims on or off (persistence.enabled
or config.spool.enabled) over an existing StatefulSet: Kubernetes forbids changing a StatefulSet's
volumeClaimTemplates ("field is immutable"), and would only say so halfway through the upgrade. The
StatefulSet is read with lookup, which finds nothing under `helm template` or `--dry-run=client`.
*/}}
{{- define "vision-events-consumer.validatePersistenceChange" -}}
{{- $fullname := include "vision-events-consumer.fullname" . }}
{{- $namespace := include "vision-events-consumer.namespace" . }}
{{- $existing := lookup "apps/v1" "StatefulSet" $namespace $fullname }}
{{- if $existing }}
{{- $had := false }}
{{- range ($existing.spec.volumeClaimTemplates | default list) }}
{{- if eq .metadata.name "data" }}{{ $had = true }}{{ end }}
{{- end }}
{{- $wants := eq (include "vision-events-consumer.persistentData" .) "true" }}
{{- if ne $had $wants }}
{{- $change := ternary "on: a PersistentVolumeClaim per replica instead of an emptyDir" "off: an emptyDir instead of the replicas' PersistentVolumeClaims" $wants }}
{{- $drain := ternary "" " Turning it off: let the spool drain first (vision_events_spool_events at 0), as the claims (data-<pod>) are kept but no longer mounted." $wants }}
{{- fail (printf "this upgrade turns the data volume %s (persistence.enabled or config.spool.enabled), but Kubernetes cannot change the volumeClaimTemplates of the existing StatefulSet %s/%s. Delete the StatefulSet and its pods (they stop gracefully; existing claims are kept), then run the same helm upgrade again: kubectl -n %s delete statefulset %s --cascade=foreground (the consumer is stopped until the upgrade starts the new pods).%s" $change $namespace $fullname $namespace $fullname $drain) }}
{{- end }}
{{- end }}
{{- end }}
