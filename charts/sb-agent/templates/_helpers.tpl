{{- /* The agent image: by digest when one is given, else the tag, which defaults to the chart's appVersion. */ -}}
{{- define "sb-agent.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
