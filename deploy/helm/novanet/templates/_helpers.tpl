{{/* The release's object names. */}}
{{- define "novanet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "novanet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "novanet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "novanet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "novanet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "novanet.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "novanet.fullname" .)) .Values.tokens.existingSecret -}}
{{- end -}}

{{/*
Whether a routing.peers entry is rendered as routing resources (a peer of
the NovaBGPClusterConfig "<release>-peers" with a NovaBGPPeerProfile of
its own) rather than in the agent's configuration: with
routing.peersAsResources, a peer by address whose keys all have a
resource field. Call with (dict "root" $ "peer" $p); "true" or "".
*/}}
{{- define "novanet.peerAsResource" -}}
{{- $p := .peer -}}
{{- $ok := and .root.Values.routing.peersAsResources (hasKey $p "neighbor_address") (not (hasKey $p "interface")) (eq .root.Values.routing.protocol "bgp") -}}
{{- $fields := list "neighbor_address" "remote_as" "description" "bfd_enabled" "bfd_min_rx_ms" "bfd_min_tx_ms" "bfd_detect_multiplier" "hold_time" "keepalive" "ebgp_multihop" "max_prefix" "password_secret" -}}
{{- range $k, $_ := $p -}}
{{- if not (has $k $fields) -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- if $ok -}}true{{- end -}}
{{- end -}}

{{/* The agent's configuration (novanet.json). */}}
{{- define "novanet.config" -}}
{{- $r := .Values.routing -}}
{{- /* A peer's password_secret and bfd_key_secret {name, key} become the files their Secrets are mounted at. */ -}}
{{- $peers := list -}}
{{- range $p := $r.peers -}}
{{- if not (include "novanet.peerAsResource" (dict "root" $ "peer" $p)) -}}
{{- $q := omit $p "password_secret" "bfd_key_secret" -}}
{{- if $p.password_secret -}}
{{- $_ := set $q "password_file" (printf "/etc/novanet/peer-secrets/%s/%s" $p.password_secret.name $p.password_secret.key) -}}
{{- end -}}
{{- if $p.bfd_key_secret -}}
{{- $_ := set $q "bfd_key_file" (printf "/etc/novanet/peer-secrets/%s/%s" $p.bfd_key_secret.name $p.bfd_key_secret.key) -}}
{{- end -}}
{{- $peers = append $peers $q -}}
{{- end -}}
{{- end -}}
{{- $routing := dict
  "protocol" $r.protocol
  "local_as" (int64 $r.localAS)
  "asn_mode" $r.asnMode
  "frr_socket_dir" $r.frrSocketDir
  "graceful_restart_time" (int64 $r.gracefulRestartTime)
  "bfd" (dict "enabled" $r.bfd.enabled "min_rx_ms" (int64 $r.bfd.minRxMs) "min_tx_ms" (int64 $r.bfd.minTxMs) "detect_multiplier" (int64 $r.bfd.detectMultiplier))
  "node_mesh" (dict "enabled" $r.nodeMesh.enabled "source" "kubernetes" "max_prefix" (int64 ($r.nodeMesh.maxPrefix | default 0)))
  "peers" $peers
-}}
{{- if eq $r.protocol "ospf" -}}
{{- if $r.peers -}}
{{- fail "routing.peers must be empty with routing.protocol=ospf: the ToRs are reached through OSPF (routing.ospf.interfaces)" -}}
{{- end -}}
{{- $ospf := dict "area" ($r.ospf.area | toString) "interfaces" ($r.ospf.interfaces | default list) -}}
{{- if not (kindIs "invalid" $r.ospf.ipv6) -}}
{{- $_ := set $ospf "ipv6" $r.ospf.ipv6 -}}
{{- end -}}
{{- if $r.ospf.authenticationSecret -}}
{{- $_ := set $ospf "authentication_key_file" "/etc/novanet/ospf-key/key" -}}
{{- $_ := set $ospf "authentication_key_id" (int64 ($r.ospf.authenticationKeyId | default 1)) -}}
{{- end -}}
{{- $_ := set $routing "ospf" $ospf -}}
{{- $_ := set $routing.node_mesh "enabled" false -}}
{{- end -}}
{{- if gt (int64 ($r.nodeMesh.bfdMinTTL | default 0)) 0 -}}
{{- $_ := set $routing.node_mesh "bfd_min_ttl" (int64 $r.nodeMesh.bfdMinTTL) -}}
{{- end -}}
{{- if $r.nodeMesh.passwordSecret -}}
{{- $_ := set $routing.node_mesh "password_file" "/etc/novanet/mesh-bgp/password" -}}
{{- end -}}
{{- if $r.nodeMesh.bfdKeySecret -}}
{{- $_ := set $routing.node_mesh "bfd_key_file" "/etc/novanet/mesh-bfd/key" -}}
{{- end -}}
{{- if gt (int64 ($r.nodeMesh.maxPrefix | default 0)) 0 -}}
{{- $_ := set $routing.node_mesh "max_prefix_warning_only" ($r.nodeMesh.maxPrefixWarningOnly | default false) -}}
{{- end -}}
{{- if not $r.fib.nexthopCompatModeOff -}}
{{- $_ := set $routing "fib" (dict "keep_nexthop_compat_mode" true) -}}
{{- end -}}
{{- if $r.controlPlaneVIP -}}
{{- $_ := set $routing "control_plane_vip" $r.controlPlaneVIP -}}
{{- $_ := set $routing "control_plane_vip_health_interval" (int64 $r.controlPlaneVIPHealthInterval) -}}
{{- $_ := set $routing "control_plane_vip_health_url" $r.controlPlaneVIPHealthURL -}}
{{- $_ := set $routing "control_plane_vip_unbind_delay_ms" (int64 $r.controlPlaneVIPUnbindDelayMs) -}}
{{- end -}}
{{- $owners := dict -}}
{{- range $name, $o := .Values.owners -}}
{{- $owner := dict "token_file" (printf "/etc/novanet/tokens/%s" $name) "allowed_prefixes" $o.allowed_prefixes -}}
{{- if hasKey $o "capabilities" -}}
{{- $_ := set $owner "capabilities" $o.capabilities -}}
{{- end -}}
{{- $_ := set $owners $name $owner -}}
{{- end -}}
{{- $cfg := dict
  "listen_socket" "/run/novaroute/novaroute.sock"
  "metrics_address" (printf ":%d" (int64 .Values.metrics.port))
  "log_level" .Values.logLevel
  "disconnect_grace_period" (int64 $r.disconnectGracePeriod)
  "on_sigterm" $r.onSigterm
  "drain_period" (int64 $r.drainPeriod)
  "owners" $owners
  "routing" $routing
  "cni" (dict "enabled" .Values.cni.enabled "socket" .Values.cni.socket "ipam_dir" .Values.cni.ipamDir)
  "datapath" (dict "enabled" .Values.datapath.enabled "bpf_pin_dir" .Values.datapath.bpfPinDir)
-}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/*
The Secrets that hold ToR passwords and BFD keys
(routing.peers[].password_secret.name, .bfd_key_secret.name), each once,
of the peers in the agent's configuration (the agent reads the passwords
of peers rendered as resources through the API).
*/}}
{{- define "novanet.peerSecrets" -}}
{{- $names := dict -}}
{{- range $p := .Values.routing.peers -}}
{{- if not (include "novanet.peerAsResource" (dict "root" $ "peer" $p)) -}}
{{- if $p.password_secret -}}
{{- $_ := set $names $p.password_secret.name true -}}
{{- end -}}
{{- if $p.bfd_key_secret -}}
{{- $_ := set $names $p.bfd_key_secret.name true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- keys $names | sortAlpha | join "," -}}
{{- end -}}
