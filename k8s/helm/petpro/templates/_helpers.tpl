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
The deployables: python module, env prefix, ports, what they need.  Ports are the dev stack's
(README "Services and ports") so logs and docs read the same everywhere.
*/}}
{{- define "petpro.components" -}}
auth:
  module: auth_svc
  prefix: AUTH
  grpcPort: 7401
  metricsPort: 7501
  needs: [database, redis, smtp]
  peers: []
  callers: [edge, notif, booking, envoy]
booking:
  module: booking_svc
  prefix: BOOKING
  grpcPort: 7402
  metricsPort: 7502
  needs: [database, kafka]
  peers: [auth, payment]
  callers: [edge, envoy]
payment:
  module: payment_svc
  prefix: PAYMENT
  grpcPort: 7403
  metricsPort: 7503
  needs: [database, stripe]
  peers: []
  callers: [edge, booking]
notif:
  module: notif_worker
  prefix: NOTIF
  grpcPort: 7404
  metricsPort: 7504
  needs: [database, redis, kafka, smtp]
  peers: [auth]
  callers: [edge]
edge:
  module: edge
  prefix: EDGE
  grpcPort: 7405
  metricsPort: 7505
  httpPort: 7482
  needs: []
  peers: [auth, booking, payment, notif]
  callers: [envoy]
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
