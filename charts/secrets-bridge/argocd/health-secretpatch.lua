-- ArgoCD health of a Secrets Bridge SecretPatch (secrets-bridge.io/v1alpha1), for the
-- argocd-cm key resource.customizations.health.secrets-bridge.io_SecretPatch
-- (argocd-cm-patch.yaml embeds this file as it is).
--   Progressing  no phase yet, Pending, Approved, Queued, Running; Executed while the
--                operator watches the Applications named in spec.observe
--   Healthy      Applied; Executed when the patch names no Application to observe
--   Degraded     Failed, Denied, AppliedUnverified
-- The message is the patch's status.message. ArgoCD runs this without Lua's standard
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
elseif phase == "Executed" then
  if obj.spec ~= nil and obj.spec.observe ~= nil then
    hs.status = "Progressing"
  else
    hs.status = "Healthy"
  end
elseif phase == "Applied" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Denied" or phase == "AppliedUnverified" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
