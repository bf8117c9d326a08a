{{/* Names and labels shared by every template. */}}
{{- define "codetailor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "codetailor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "codetailor.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "codetailor.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "codetailor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codetailor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "codetailor.labels" -}}
{{ include "codetailor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Images: repository:tag, tags pinned in values. */}}
{{- define "codetailor.cpuImage" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.cpuTag -}}
{{- end -}}
{{- define "codetailor.modelImage" -}}
{{- if .Values.gpu.enabled -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.gpuTag -}}
{{- else -}}
{{- include "codetailor.cpuImage" . -}}
{{- end -}}
{{- end -}}

{{- define "codetailor.secretName" -}}
{{- default (printf "%s-secrets" (include "codetailor.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "codetailor.homeClaim" -}}
{{- default (printf "%s-home" (include "codetailor.fullname" .)) .Values.home.existingClaim -}}
{{- end -}}

{{- define "codetailor.qdrantUrl" -}}
{{- if .Values.qdrant.enabled -}}
{{- printf "http://%s-qdrant.%s.svc:6333" (include "codetailor.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.qdrant.externalUrl -}}
{{- end -}}
{{- end -}}

{{- define "codetailor.imagePullSecrets" -}}
{{- $secrets := .Values.imagePullSecrets -}}
{{- if .Values.registryCredentials.enabled -}}
{{- $secrets = append $secrets (dict "name" (printf "%s-registry" (include "codetailor.fullname" .))) -}}
{{- end -}}
{{- with $secrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/* Environment every codetailor container gets: the home, the config file, the pepper (from the Secret). */}}
{{- define "codetailor.env" -}}
- name: CODETAILOR_HOME
  value: {{ .Values.home.mountPath | quote }}
- name: CODETAILOR_CONFIG
  value: /etc/codetailor/config.yaml
- name: CODETAILOR_KEY_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ include "codetailor.secretName" . }}
      key: key-pepper
{{- if .Values.ray.auth.enabled }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "codetailor.secretName" . }}
      key: auth_token
{{- else }}
- name: RAY_AUTH_MODE
  value: disabled
{{- end }}
{{- if .Values.qdrant.enabled }}
- name: CODETAILOR_RETRIEVAL__QDRANT_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "codetailor.secretName" . }}
      key: qdrant-api-key
{{- end }}
- name: HF_HUB_OFFLINE
  value: "1"
{{- end -}}

{{/* KubeRay's token auth for a RayCluster spec: the operator uses the same Secret for its dashboard calls. */}}
{{- define "codetailor.rayAuthOptions" -}}
{{- if .Values.ray.auth.enabled }}
authOptions:
  mode: token
  secretName: {{ include "codetailor.secretName" . }}
{{- end }}
{{- end -}}

{{/* Mounts of every codetailor container; (dict "ctx" . "readOnlyHome" true) for the gateway. The root
filesystem is read-only: /tmp and the user's home are emptyDirs (Python, Ray, vLLM and HF write there). */}}
{{- define "codetailor.volumeMounts" -}}
{{- $ctx := .ctx | default . -}}
- name: home
  mountPath: {{ $ctx.Values.home.mountPath }}
  {{- if .readOnlyHome }}
  readOnly: true
  {{- end }}
- name: config
  mountPath: /etc/codetailor
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: user-home
  mountPath: /home/codetailor
- name: ray-tmp
  mountPath: /tmp/ray
{{- end -}}

{{- define "codetailor.volumes" -}}
- name: home
  persistentVolumeClaim:
    claimName: {{ include "codetailor.homeClaim" . }}
- name: config
  configMap:
    name: {{ include "codetailor.fullname" . }}-config
- name: tmp
  emptyDir: {}
- name: user-home
  emptyDir: {}
- name: ray-tmp
  emptyDir: {}
{{- end -}}

{{/* KubeRay-style probes for a Ray container: the local raylet (and on the head, the GCS) answer. */}}
{{- define "codetailor.rayProbes" -}}
readinessProbe:
  exec:
    command: ["bash", "-c", {{ printf "wget -T 4 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success%s" (ternary " && wget -T 4 -q -O- http://localhost:8265/api/gcs_healthz | grep success" "" .head) | quote }}]
  initialDelaySeconds: 10
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 10
livenessProbe:
  exec:
    command: ["bash", "-c", {{ printf "wget -T 4 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success%s" (ternary " && wget -T 4 -q -O- http://localhost:8265/api/gcs_healthz | grep success" "" .head) | quote }}]
  initialDelaySeconds: 30
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 120
{{- end -}}
