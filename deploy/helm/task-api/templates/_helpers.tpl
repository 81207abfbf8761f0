{{/* Names, labels and shared fragments of the task-api chart. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "task-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, else release name + chart name (once if one contains the other). */}}
{{- define "task-api.fullname" -}}
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

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "task-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "task-api.labels" -}}
helm.sh/chart: {{ include "task-api.chart" . }}
{{ include "task-api.selectorLabels" . }}
app.kubernetes.io/version: {{ include "task-api.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pakaura
{{- end }}

{{/* Labels that select the API pods (never change them on upgrade: selectors are immutable). */}}
{{- define "task-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "task-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the API pods run as. */}}
{{- define "task-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "task-api.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "task-api.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The full image reference; a digest wins over the tag. */}}
{{- define "task-api.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "task-api.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Name of the Secret with DATABASE_URL and JWT_SECRET. */}}
{{- define "task-api.secretName" -}}
{{- default (include "task-api.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Name of the Secret the migration Job reads DATABASE_URL from (it exists before the release's own resources). */}}
{{- define "task-api.migrationSecretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-migrate" (include "task-api.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Name of the Secret with the Dapr API token (key `token`). */}}
{{- define "task-api.daprTokenSecretName" -}}
{{- if .Values.dapr.apiToken.existingSecret }}
{{- .Values.dapr.apiToken.existingSecret }}
{{- else }}
{{- printf "%s-dapr-api-token" (include "task-api.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
A value kept across upgrades: the given key of an existing Secret when there is one (lookup
returns nothing under `helm template`), else the explicit value, else a fresh random string.
Arguments: a dict with ctx, secret (name), key, value.
*/}}
{{- define "task-api.stickySecretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing (hasKey $existing "data") (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 48 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails the render when the shutdown settings cannot finish inside the pod's grace period. */}}
{{- define "task-api.validateShutdown" -}}
{{- $drain := add .Values.lifecycle.preStopSleepSeconds .Values.config.shutdownTimeoutSeconds }}
{{- $needed := $drain }}
{{- if .Values.dapr.enabled }}
{{- $needed = add $drain .Values.dapr.gracefulShutdownSeconds }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds + config.shutdownTimeoutSeconds%s (%d)" (int .Values.terminationGracePeriodSeconds) (ternary " + dapr.gracefulShutdownSeconds" "" .Values.dapr.enabled) (int $needed)) }}
{{- end }}
{{- end }}

{{/*
Environment variables of the app that are not secret; the names are those of .env.sample.
Shared by the Deployment and the migration Job (which gets no settings file: hooks run before the
ConfigMap exists, and migrating needs only the database settings).
*/}}
{{- define "task-api.configEnv" -}}
- name: HOST
  value: {{ .Values.config.host | quote }}
- name: PORT
  value: {{ .Values.config.port | quote }}
- name: LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: EVENT_DELIVERY
  value: {{ .Values.config.eventDelivery | quote }}
- name: EVENT_QUEUE_CAPACITY
  value: {{ .Values.config.eventQueueCapacity | quote }}
- name: EVENT_BATCH_MAX
  value: {{ .Values.config.eventBatchMax | quote }}
- name: EVENT_BATCH_LINGER_MS
  value: {{ .Values.config.eventBatchLingerMs | quote }}
- name: EVENT_BATCH_SAME_KEY
  value: {{ .Values.config.eventBatchSameKey | quote }}
- name: EVENT_SOURCE
  value: {{ .Values.config.eventSource | quote }}
- name: OUTBOX_MAX_ATTEMPTS
  value: {{ .Values.config.outbox.maxAttempts | quote }}
- name: OUTBOX_BATCH_SIZE
  value: {{ .Values.config.outbox.batchSize | quote }}
- name: OUTBOX_POLL_INTERVAL_MS
  value: {{ .Values.config.outbox.pollIntervalMs | quote }}
- name: DATABASE_POOL_SIZE
  value: {{ .Values.config.databasePoolSize | quote }}
- name: TOPIC_TASK_EVENTS
  value: {{ .Values.config.topics.taskEvents | quote }}
- name: TOPIC_TASK_UPDATES
  value: {{ .Values.config.topics.taskUpdates | quote }}
- name: TOPIC_REMINDERS
  value: {{ .Values.config.topics.reminders | quote }}
- name: COOKIE_SECURE
  value: {{ .Values.config.cookie.secure | quote }}
- name: COOKIE_SAMESITE
  value: {{ .Values.config.cookie.sameSite | quote }}
{{- /* Always set: unset, the binary would allow credentialed CORS from http://localhost:3000 in a deployment. */}}
- name: FRONTEND_URL
  value: {{ .Values.config.frontendUrl | default "" | quote }}
- name: RATE_LIMIT_AUTH_PER_MINUTE
  value: {{ .Values.config.rateLimit.authPerMinute | quote }}
- name: RATE_LIMIT_TASKS_PER_MINUTE
  value: {{ .Values.config.rateLimit.tasksPerMinute | quote }}
{{- with .Values.config.trustedProxies }}
- name: TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
- name: SHUTDOWN_TIMEOUT_SECONDS
  value: {{ .Values.config.shutdownTimeoutSeconds | quote }}
- name: DAPR_ENABLED
  value: {{ .Values.dapr.enabled | quote }}
- name: DAPR_HTTP_PORT
  value: {{ .Values.dapr.httpPort | quote }}
{{- with .Values.dapr.httpEndpoint }}
- name: DAPR_HTTP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: DAPR_PUBSUB_NAME
  value: {{ .Values.dapr.pubsubName | quote }}
- name: DAPR_PUBLISH_TIMEOUT
  value: {{ .Values.dapr.publishTimeoutSeconds | toString | quote }}
{{- /* Cutover from the original service and bounded password hashing (docs/MIGRATING.md). */}}
- name: PASSWORD_HASH
  value: {{ .Values.config.passwordHash.algorithm | quote }}
- name: PASSWORD_HASH_CONCURRENCY
  value: {{ .Values.config.passwordHash.concurrency | quote }}
- name: PASSWORD_HASH_QUEUE_WAIT_MS
  value: {{ .Values.config.passwordHash.queueWaitMs | quote }}
- name: MIGRATE_ON_START
  value: {{ .Values.config.migrateOnStart | quote }}
- name: AUTH_USER_CACHE_TTL_MS
  value: {{ .Values.config.authUserCacheTtlMs | quote }}
{{- end }}

{{/* Security contexts and scheduling shared by the Deployment and the Job. */}}
{{- define "task-api.podScheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

