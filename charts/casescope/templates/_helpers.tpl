{{/*
Chart name, truncated to 63 characters (Kubernetes name limit).
*/}}
{{- define "casescope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or <release> when it already contains the
chart name. Truncated to 63 characters.
*/}}
{{- define "casescope.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "casescope.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource. Argument: the root context.
*/}}
{{- define "casescope.labels" -}}
helm.sh/chart: {{ include "casescope.chart" . }}
{{ include "casescope.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: casescope
{{- end }}

{{/*
Selector labels shared by every resource of the release. Argument: the root context.
*/}}
{{- define "casescope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "casescope.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of one service's resources: <fullname>-<service>.
Argument: dict "root" $ "name" <service name>.
*/}}
{{- define "casescope.componentName" -}}
{{- printf "%s-%s" (include "casescope.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of one service's resources. Argument: dict "root" $ "name" <service name>.
*/}}
{{- define "casescope.componentLabels" -}}
{{ include "casescope.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
Selector labels of one service's pods. Argument: dict "root" $ "name" <service name>.
*/}}
{{- define "casescope.componentSelectorLabels" -}}
{{ include "casescope.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "casescope.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "casescope.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the shared ConfigMap.
*/}}
{{- define "casescope.configMapName" -}}
{{- printf "%s-config" (include "casescope.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Container image reference.
*/}}
{{- define "casescope.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Name of the evidence PersistentVolumeClaim (an existing one, or the one the chart creates).
*/}}
{{- define "casescope.evidenceClaimName" -}}
{{- .Values.evidence.existingClaim | default (printf "%s-evidence" (include "casescope.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}
