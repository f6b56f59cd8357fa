-- Argo CD health of a lambdapod.io Function, from its kstatus conditions.
-- Install it as resource.customizations.health.lambdapod.io_Function in
-- argocd-cm (docs/install.md). It uses only Lua's base library, which Argo
-- CD gives custom health scripts.
--   Healthy      Ready=True for the current generation (scaled to zero too)
--   Degraded     Stalled=True, or Ready=False because a build failed
--   Progressing  no Ready yet, an older generation observed, Reconciling=True,
--                or Ready=False for any other reason (rolling out, building)
local hs = {
  status = "Progressing",
  message = "Waiting for the lambdapod manager to reconcile the Function"
}

local function condition(name)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == name then
      return c
    end
  end
  return nil
end

-- Built=False with one of these reasons is a build under way, not a failure.
local building = {
  Building = true, BuildPending = true, BuildRunning = true, BuildStarted = true,
  AwaitingBuild = true, Pending = true, Progressing = true, Running = true,
  Started = true, Resolving = true
}

local ready = condition("Ready")
if ready == nil then
  return hs
end

local generation = obj.metadata.generation or 0
local observed = -1
if obj.status.observedGeneration ~= nil then
  observed = obj.status.observedGeneration
end
local readyObserved = ready.observedGeneration or observed
if observed < generation or readyObserved < generation then
  hs.message = "Waiting for the lambdapod manager to observe generation " .. tostring(generation)
  return hs
end

local message = ready.message or ""

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message
  if hs.message == "" then
    hs.message = stalled.message or ""
  end
  return hs
end

local built = condition("Built")
if ready.status ~= "True" and built ~= nil and built.status == "False" and not building[built.reason or ""] then
  hs.status = "Degraded"
  hs.message = message
  if built.message ~= nil and built.message ~= "" and built.message ~= message then
    if hs.message ~= "" then
      hs.message = hs.message .. ": "
    end
    hs.message = hs.message .. built.message
  end
  return hs
end

local reconciling = condition("Reconciling")
if ready.status == "True" and (reconciling == nil or reconciling.status ~= "True") then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

hs.status = "Progressing"
hs.message = message
return hs
