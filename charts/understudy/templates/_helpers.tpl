{{/*
Names and labels shared by every template.
*/}}

{{/* Chart name, overridable. */}}
{{- define "understudy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "understudy.fullname" -}}
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

{{- define "understudy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release (a Deployment selector is immutable). */}}
{{- define "understudy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "understudy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Standard labels of every resource. */}}
{{- define "understudy.labels" -}}
helm.sh/chart: {{ include "understudy.chart" . }}
{{ include "understudy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: understudy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of the operator's own objects (component=operator). */}}
{{- define "understudy.operatorLabels" -}}
{{ include "understudy.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "understudy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "understudy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false: name the existing ServiceAccount the operator runs as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "understudy.leaseName" -}}
{{- default (include "understudy.fullname" .) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{- define "understudy.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Name prefix of the people's ClusterRoles. */}}
{{- define "understudy.peopleRolePrefix" -}}
{{- .Values.rbac.peopleRoles.namePrefix -}}
{{- end -}}

{{/* The PromQL matcher of the operator's own scrape target (UnderstudyNoLeader). */}}
{{- define "understudy.operatorSelector" -}}
{{- if .Values.prometheusRule.operatorSelector -}}
{{- .Values.prometheusRule.operatorSelector -}}
{{- else -}}
{{- printf "job=%q" (include "understudy.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Values that were moved: fail with the new name instead of rendering something else than
the user meant (a `service.type: LoadBalancer` meant for the webhooks must not expose the
metrics). Also the checks a schema cannot express. Included by templates/deployment.yaml.
*/}}
{{- define "understudy.checkValues" -}}
{{- if hasKey .Values.service "type" -}}
{{- fail "service.type was removed: the webhooks have their own Service now (<fullname>-webhooks) — set webhookService.type instead; the metrics Service <fullname> is always ClusterIP" -}}
{{- end -}}
{{- if hasKey .Values.service "port" -}}
{{- fail "service.port was removed: the webhooks have their own Service now (<fullname>-webhooks) — set webhookService.port instead (service.metricsPort is the metrics Service's port)" -}}
{{- end -}}
{{- if hasKey .Values.networkPolicy.ingress "from" -}}
{{- fail "networkPolicy.ingress.from was removed: set networkPolicy.ingress.webhooks.from (who may reach the webhooks; empty: anyone) and networkPolicy.ingress.metrics.from (your scrapers)" -}}
{{- end -}}
{{- with .Values.watchNamespace -}}
{{- $watch := . -}}
{{- range $key := list "secretsNamespaces" "servicesNamespaces" -}}
{{- range (get $.Values.rbac $key) -}}
{{- if ne . $watch -}}
{{- fail (printf "rbac.%s lists %q but watchNamespace is %q: an operator watching one namespace reads Secrets and flips Services only there; leave rbac.%s empty" $key . $watch $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.operator.port) (int .Values.operator.healthPort) -}}
{{- fail "operator.port and operator.healthPort must differ: the webhooks and /metrics, /healthz, /readyz listen on separate ports" -}}
{{- end -}}
{{- end -}}
