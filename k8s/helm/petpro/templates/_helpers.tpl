{{/* Names and labels */}}
{{- define "petpro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "petpro.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "petpro.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "petpro.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "petpro.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "petpro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: petpro
{{- end -}}

{{/* selector labels of one component: include "petpro.selector" (list $ "booking") */}}
{{- define "petpro.selector" -}}
app.kubernetes.io/name: {{ include "petpro.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "petpro.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq $tag "latest" -}}{{- fail "image.tag must be a version, never latest" -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "petpro.signingKeysSecretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- required "secrets.existingSigningKeysSecret is required with secrets.existingSecret" .Values.secrets.existingSigningKeysSecret -}}
{{- else -}}
{{- printf "%s-signing-keys" (include "petpro.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "petpro.secretName" -}}
{{- default (printf "%s-secrets" (include "petpro.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
The mesh manifest (petpro/mesh.py) as `make k8s` writes it to files/mesh.json: the services in order,
each one's python module, env prefix, ports (the dev stack's, README "Services and ports"), backing
services, peers and callers; Envoy's upstreams; the topics.  Nothing else in the chart names them.
*/}}
{{- define "petpro.mesh" -}}
{{- $mesh := .Files.Get "files/mesh.json" -}}
{{- if not $mesh -}}{{- fail "files/mesh.json is missing: run `make k8s`" -}}{{- end -}}
{{- $mesh -}}
{{- end -}}

{{/* the deployables by name (from the manifest): include "petpro.components" . | fromYaml */}}
{{- define "petpro.components" -}}
{{- (include "petpro.mesh" . | fromJson).components | toYaml -}}
{{- end -}}

{{/* gRPC target of a component: dns:/// + the headless Service (one A record per ready pod) */}}
{{- define "petpro.target" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- $c := index (include "petpro.components" $root | fromYaml) $name -}}
{{- printf "dns:///%s-%s:%v" (include "petpro.fullname" $root) $name $c.grpcPort -}}
{{- end -}}

{{- define "petpro.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "petpro.secretName" (index . 2) }}
      key: {{ index . 1 }}
{{- end -}}

{{- /* DATABASE_POOL_MODE and DATABASE_DIRECT_URL behind a transaction pooler (database.poolMode) */ -}}
{{- define "petpro.poolerEnv" -}}
{{- if eq .Values.database.poolMode "transaction" -}}
- name: DATABASE_POOL_MODE
  value: transaction
{{ include "petpro.secretEnv" (list "DATABASE_DIRECT_URL" "DATABASE_DIRECT_URL" .) }}
{{- else if ne .Values.database.poolMode "session" }}
{{- fail "database.poolMode must be session or transaction" }}
{{- end }}
{{- end -}}

{{- define "petpro.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "petpro.topology" -}}
{{- $root := index . 0 -}}
topologySpreadConstraints:
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ $root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "petpro.selector" . | nindent 8 }}
{{- end -}}

{{- define "petpro.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}

{{/* labels of a component's pods: the selector plus the common ones (no duplicate keys) */}}
{{- define "petpro.podLabels" -}}
{{- include "petpro.selector" . }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
app.kubernetes.io/part-of: petpro
{{- end -}}

{{/*
notif_worker's push and SMS provider settings (values: notifications.*): the FCM service-account
JSON and the APNs .p8 key as files of their Secrets (mounted at /var/run/secrets/petpro/<fcm|apns>),
Twilio's Account SID and auth token from its Secret.  A provider without a Secret is off.
*/}}
{{- define "petpro.notifProviderEnv" -}}
{{- $n := .Values.notifications -}}
{{- $public := printf "%s://%s" (ternary "https" "http" (ne .Values.ingress.tlsSecretName "")) .Values.publicHost -}}
{{- with $n.fcm }}
{{- if .existingSecret }}
- name: NOTIF_FCM_CREDENTIALS_FILE
  value: {{ printf "/var/run/secrets/petpro/fcm/%s" .key | quote }}
{{- with .apiBase }}
- name: NOTIF_FCM_API_BASE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $n.apns }}
{{- if .existingSecret }}
- name: NOTIF_APNS_KEY_FILE
  value: {{ printf "/var/run/secrets/petpro/apns/%s" .key | quote }}
- name: NOTIF_APNS_KEY_ID
  value: {{ required "notifications.apns.keyId is required with an APNs key" .keyId | quote }}
- name: NOTIF_APNS_TEAM_ID
  value: {{ required "notifications.apns.teamId is required with an APNs key" .teamId | quote }}
- name: NOTIF_APNS_TOPIC
  value: {{ required "notifications.apns.topic (the app's bundle id) is required with an APNs key" .topic | quote }}
{{- with .apiBase }}
- name: NOTIF_APNS_API_BASE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $n.sms }}
{{- if .existingSecret }}
- name: NOTIF_SMS_ACCOUNT_SID
  valueFrom:
    secretKeyRef: {name: {{ .existingSecret }}, key: {{ .accountSidKey }}}
- name: NOTIF_SMS_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .existingSecret }}, key: {{ .authTokenKey }}}
{{- if not (or .from .messagingServiceSid) }}
{{- fail "notifications.sms needs a sending number (from) or a messagingServiceSid" }}
{{- end }}
{{- with .from }}
- name: NOTIF_SMS_FROM
  value: {{ . | quote }}
{{- end }}
{{- with .messagingServiceSid }}
- name: NOTIF_SMS_MESSAGING_SERVICE_SID
  value: {{ . | quote }}
{{- end }}
{{- with .apiBase }}
- name: NOTIF_SMS_API_BASE
  value: {{ . | quote }}
{{- end }}
# the URL Twilio posts incoming texts (STOP) to: their signature covers it
- name: NOTIF_SMS_WEBHOOK_URL
  value: {{ printf "%s/webhooks/twilio/sms" $public | quote }}
{{- end }}
{{- end }}
{{- end }}
