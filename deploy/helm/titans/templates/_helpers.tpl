{{/* Resource name prefix: the release name, unless it already says titans. */}}
{{- define "titans.fullname" -}}
{{- if contains "titans" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-titans" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "titans.labels" -}}
app.kubernetes.io/name: titans
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: titans
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "titans.selectorLabels" (list . "api") */}}
{{- define "titans.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: titans
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The pinned image; a floating tag is refused at render time. */}}
{{- define "titans.image" -}}
{{- $tag := required "image.tag is required (pin a released version)" .Values.image.tag | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must not be \"latest\": pin a released version" -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "titans.serviceAccountName" -}}
{{- default (include "titans.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* env entries read from the Titans Secret; include "titans.secretEnv" (list . "database-url" ...) */}}
{{- define "titans.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $s := $root.Values.secrets -}}
{{- range $name := rest . }}
{{- if eq $name "TITANS_DATABASE_URL" }}
- name: TITANS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.databaseUrlKey }}
{{- else if eq $name "TITANS_TRACKING_URI" }}
- name: TITANS_TRACKING_URI
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.trackingUriKey }}
{{- else if eq $name "TITANS_API_KEYS" }}
- name: TITANS_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.apiKeysKey }}
{{- else if eq $name "TITANS_REDIS_URL" }}
- name: TITANS_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.redisUrlKey }}
      optional: true
{{- else if eq $name "TITANS_SLACK_WEBHOOK_URL" }}
- name: TITANS_SLACK_WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.slackWebhookUrlKey }}
      optional: true
{{- else if eq $name "TITANS_PAGERDUTY_ROUTING_KEY" }}
- name: TITANS_PAGERDUTY_ROUTING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.pagerdutyRoutingKeyKey }}
      optional: true
{{- else }}
{{- fail (printf "titans.secretEnv: unknown variable %s" $name) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* /tmp and TITANS_HOME as emptyDirs under a read-only root filesystem */}}
{{- define "titans.writableMounts" -}}
- name: tmp
  mountPath: /tmp
- name: titans-home
  mountPath: {{ .Values.config.TITANS_HOME | default "/var/lib/titans" }}
{{- end -}}

{{- define "titans.writableVolumes" -}}
{{- $root := index . 0 -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ index . 1 }}
- name: titans-home
  emptyDir:
    sizeLimit: {{ index . 2 }}
{{- end -}}

{{/* Pod-level settings shared by every workload */}}
{{- define "titans.podSpecCommon" -}}
serviceAccountName: {{ include "titans.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
