-- ArgoCD health of a Secrets Bridge SecretReadRequest (secrets-bridge.io/v1alpha1), for the
-- argocd-cm key resource.customizations.health.secrets-bridge.io_SecretReadRequest
-- (argocd-cm-patch.yaml embeds this file as it is).
--   Progressing  no phase yet, Pending, Approved, Queued, Running
--   Healthy      Delivered, Revealed
--   Degraded     Denied, Failed, Expired
-- The message is the request's status.message. ArgoCD runs this without Lua's standard
-- libraries (no string, math or io), with the resource in the global obj.
local hs = {}
local status = obj.status or {}
local phase = status.phase
hs.message = status.message
if phase == nil then
  hs.status = "Progressing"
  if hs.message == nil then
    hs.message = "Waiting for the Secrets Bridge operator"
  end
elseif phase == "Pending" or phase == "Approved" or phase == "Queued" or phase == "Running" then
  hs.status = "Progressing"
elseif phase == "Delivered" or phase == "Revealed" then
  hs.status = "Healthy"
elseif phase == "Denied" or phase == "Failed" or phase == "Expired" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
