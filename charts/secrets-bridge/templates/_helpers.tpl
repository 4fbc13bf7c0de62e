{{- define "sb.labels" -}}
app.kubernetes.io/name: sb-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: secrets-bridge
{{- end }}
{{- define "sb.selector" -}}
app.kubernetes.io/name: sb-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- /* The operator's Kubernetes user name: its ServiceAccount in the release namespace. */ -}}
{{- define "sb.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:sb-operator
{{- end }}
{{- /* The operator image: by digest when one is given, else the tag, which defaults to the chart's appVersion. */ -}}
{{- define "sb.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
