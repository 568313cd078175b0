-- PetPro edge: every error response becomes application/problem+json (RFC 9457).
--
-- Loaded by edge/gateway/config.py as the inline source of Envoy's Lua HTTP filter, placed FIRST in
-- the filter chain: its envoy_on_request sees the original REST request (before the gRPC-JSON
-- transcoder rewrites :path), and its envoy_on_response sees every response LAST, i.e. after the
-- transcoder has turned a gRPC status into JSON and including Envoy's own local replies (buffer 413,
-- local rate limit 429, router 503/504, transcoder 400/404).
--
-- build_config() prepends a line `PETPRO_EDGE = {...}` (created and protected routes, the HTTP app's
-- paths, the gRPC -> HTTP status table, titles, error domain); the file does not run without it.
--
-- Shape of the body: {type, title, status, detail, instance, reason, domain,
--                     violations: [{field, description, reason}], request_id}
-- Sources, in order of preference:
--   1. a transcoded google.rpc.Status ({code, message, details: [{"@type": ".../google.rpc.ErrorInfo",
--      reason, domain}, {"@type": ".../google.rpc.BadRequest", field_violations: [...]}]}); the HTTP
--      status comes from the gRPC code (grpc-gateway's table);
--   2. Envoy's own local replies (text/plain): status kept, reason derived from it;
--   3. any other 4xx/5xx without a problem body (e.g. a plain error of the HTTP app).
-- Bodies that are already application/problem+json (the edge HTTP app) pass unchanged.
-- A 200 to a route whose RPC creates a resource (policy `creates`) becomes 201.

-- The configuration prelude is generated from the same sources as the rest of the edge: the
-- created routes from the protos' method policy, the gRPC -> HTTP table from edge/gateway/status.py.
local CONFIG = assert(PETPRO_EDGE, "problem.lua needs its PETPRO_EDGE prelude (edge.gateway.config.lua_source)")
local CREATED = CONFIG.created -- { {method = "POST", pattern = "^/v1/pets$"}, ... }
local DOMAIN = CONFIG.domain
local TYPE_BASE = CONFIG.type_base or "https://petpro.dev/problems/"
local GRPC_HEADERS = { "grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-accept-encoding" }
local MD = "petpro.edge" -- dynamic metadata namespace (also read by the access log)

-- gRPC code -> HTTP status, as grpc-gateway maps it (runtime.HTTPStatusFromCode), and code names
local GRPC_HTTP = CONFIG.grpc_http
local GRPC_NAMES = CONFIG.grpc_names
local TITLES = CONFIG.titles
-- reason for errors Envoy produces itself (no google.rpc.ErrorInfo available)
local LOCAL_REASONS = {
  [400] = "INVALID_REQUEST", [401] = "UNAUTHENTICATED", [403] = "PERMISSION_DENIED",
  [404] = "NOT_FOUND", [405] = "METHOD_NOT_ALLOWED", [408] = "REQUEST_TIMEOUT",
  [413] = "PAYLOAD_TOO_LARGE", [414] = "URI_TOO_LONG", [415] = "UNSUPPORTED_MEDIA_TYPE",
  [429] = "RATE_LIMITED", [431] = "HEADERS_TOO_LARGE", [500] = "INTERNAL", [501] = "UNIMPLEMENTED",
  [502] = "BAD_GATEWAY", [503] = "UNAVAILABLE", [504] = "DEADLINE_EXCEEDED",
}
-- what a client is told for Envoy's own 5xx (Envoy's text names internal hosts and sockets)
local LOCAL_DETAILS = {
  [502] = "the upstream service answered with an invalid response",
  [503] = "the service is temporarily unavailable; retry later",
  [504] = "the service did not answer in time",
}

---------------------------------------------------------------------------------------------------
-- minimal JSON (decode: full RFC 8259; encode: what a problem needs)
---------------------------------------------------------------------------------------------------

local json_null = setmetatable({}, { __tostring = function() return "null" end })

local function utf8_char(cp)
  local floor = math.floor
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
    0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local decode_value

local function skip_ws(s, i)
  return s:find("[^ \t\r\n]", i) or (#s + 1)
end

local function decode_string(s, i) -- s:sub(i, i) == '"'
  local out, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then error("unterminated string") end
    out[#out + 1] = s:sub(j, k - 1)
    if s:sub(k, k) == '"' then
      return table.concat(out), k + 1
    end
    local e = s:sub(k + 1, k + 1)
    if e == "u" then
      local cp = tonumber(s:sub(k + 2, k + 5), 16)
      if not cp then error("bad \\u escape") end
      j = k + 6
      if cp >= 0xD800 and cp <= 0xDBFF and s:sub(j, j + 1) == "\\u" then
        local lo = tonumber(s:sub(j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          j = j + 6
        end
      end
      out[#out + 1] = utf8_char(cp)
    else
      local r = ESCAPES[e]
      if not r then error("bad escape") end
      out[#out + 1] = r
      j = k + 2
    end
  end
end

decode_value = function(s, i)
  i = skip_ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local obj = {}
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then error("expected key") end
      local key
      key, i = decode_string(s, i)
      i = skip_ws(s, i)
      if s:sub(i, i) ~= ":" then error("expected ':'") end
      obj[key], i = decode_value(s, i + 1)
      i = skip_ws(s, i)
      c = s:sub(i, i)
      if c == "}" then return obj, i + 1 end
      if c ~= "," then error("expected ',' or '}'") end
      i = skip_ws(s, i + 1)
    end
  elseif c == "[" then
    local arr = {}
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
      arr[#arr + 1], i = decode_value(s, i)
      i = skip_ws(s, i)
      c = s:sub(i, i)
      if c == "]" then return arr, i + 1 end
      if c ~= "," then error("expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif s:sub(i, i + 3) == "true" then
    return true, i + 4
  elseif s:sub(i, i + 4) == "false" then
    return false, i + 5
  elseif s:sub(i, i + 3) == "null" then
    return json_null, i + 4
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not num or num == "" then error("unexpected character at " .. i) end
  return tonumber(num), i + #num
end

local function json_decode(s)
  local ok, value = pcall(function()
    local v, i = decode_value(s, 1)
    if skip_ws(s, i) <= #s then error("trailing data") end
    return v
  end)
  if ok then return value end
  return nil
end

local function encode_string(s)
  s = s:gsub('[%c"\\]', function(ch)
    if ch == '"' then return '\\"' end
    if ch == "\\" then return "\\\\" end
    if ch == "\n" then return "\\n" end
    if ch == "\r" then return "\\r" end
    if ch == "\t" then return "\\t" end
    return string.format("\\u%04x", ch:byte())
  end)
  return '"' .. s .. '"'
end

-- encode an ordered object: {{key, value}, ...}; values: string, number, boolean, or a list of
-- ordered objects (encoded as a JSON array)
local function encode_object(pairs_list)
  local parts = {}
  for _, kv in ipairs(pairs_list) do
    local k, v = kv[1], kv[2]
    local t = type(v)
    local enc
    if t == "string" then
      enc = encode_string(v)
    elseif t == "number" then
      enc = string.format("%d", v)
    elseif t == "boolean" then
      enc = tostring(v)
    elseif t == "table" then
      local items = {}
      for _, item in ipairs(v) do items[#items + 1] = encode_object(item) end
      enc = "[" .. table.concat(items, ",") .. "]"
    end
    if enc then parts[#parts + 1] = encode_string(k) .. ":" .. enc end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

---------------------------------------------------------------------------------------------------
-- problem construction
---------------------------------------------------------------------------------------------------

local function str(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return string.format("%d", v) end
  return ""
end

local function type_of(detail)
  local t = str(detail["@type"])
  return t:match("([^/]+)$") or t
end

-- a transcoded google.rpc.Status -> fields of the problem (nil when the body is not one)
local function from_status(st)
  if type(st) ~= "table" or type(st.code) ~= "number" then return nil end
  local p = {
    code = st.code, detail = str(st.message), reason = "", domain = "", violations = {},
  }
  local details = st.details
  if type(details) == "table" then
    for _, d in ipairs(details) do
      if type(d) == "table" then
        local t = type_of(d)
        if t == "google.rpc.ErrorInfo" then
          p.reason = str(d.reason)
          p.domain = str(d.domain)
          if type(d.metadata) == "table" and tostring(d.metadata.retry_after_seconds or ""):match("^%d+$") then
            p.retry_after = d.metadata.retry_after_seconds
          end
        elseif t == "google.rpc.BadRequest" then
          local fvs = d.field_violations or d.fieldViolations
          if type(fvs) == "table" then
            for _, fv in ipairs(fvs) do
              if type(fv) == "table" then
                p.violations[#p.violations + 1] = {
                  { "field", str(fv.field) }, { "description", str(fv.description) },
                  { "reason", str(fv.reason) },
                }
              end
            end
          end
        end
      end
    end
  end
  return p
end

-- violations recognisable in the transcoder's own 400 messages
local function local_violations(status, text)
  local out = {}
  if status == 400 then
    local field = text:match('Could not find field "([^"]+)"')
    if field then
      out[1] = { { "field", field }, { "description", "unknown field or query parameter" },
        { "reason", "UNKNOWN_FIELD" } }
      return out
    end
    -- e.g. 'species: invalid value "dog" for type ...' or 'slot: invalid google.protobuf.Timestamp ...'
    local name, what = text:match("^([%w_%.%[%]]+): (invalid.*)$")
    if name then
      out[1] = { { "field", name }, { "description", what }, { "reason", "INVALID_VALUE" } }
    end
  end
  return out
end

local function build_problem(status, content_type, raw, meta)
  local reason, domain, detail, violations = "", "", "", {}
  local parsed = nil
  if content_type:find("json", 1, true) and #raw > 0 then
    parsed = from_status(json_decode(raw))
  end
  if parsed then
    status = GRPC_HTTP[parsed.code] or 500
    reason = parsed.reason ~= "" and parsed.reason or (GRPC_NAMES[parsed.code] or "UNKNOWN")
    domain = parsed.domain
    detail = parsed.detail
    violations = parsed.violations
    if parsed.domain == "" and (parsed.code == 14 or parsed.code == 4 or parsed.code == 1) then
      -- UNAVAILABLE / DEADLINE_EXCEEDED produced by Envoy for the gRPC upstream (no ErrorInfo), or
      -- CANCELLED by an upstream that gave up on the call (a replica shutting down): retry later
      if parsed.code == 1 then reason = "UNAVAILABLE" end
      detail = LOCAL_DETAILS[status] or detail
    elseif parsed.code == 2 or parsed.code == 13 or parsed.code == 15 then
      -- UNKNOWN / INTERNAL / DATA_LOSS: whatever their message says is for the logs, not the client
      detail = "internal error (request id " .. str(meta.request_id) .. ")"
      reason = "INTERNAL"
      violations = {}
    end
  else
    reason = LOCAL_REASONS[status] or (status >= 500 and "INTERNAL" or "BAD_REQUEST")
    if status >= 500 then
      detail = LOCAL_DETAILS[status] or "internal error"
    else
      -- Envoy's own text (e.g. the transcoder's JSON parse error): its first line, printable
      -- ASCII only (it may quote the offending bytes of the request)
      detail = (raw:match("^[^\n]*") or ""):gsub("[^\32-\126]", "?"):gsub("%s+$", "")
      if #detail > 500 then detail = detail:sub(1, 500) end
      violations = local_violations(status, detail)
    end
  end
  if domain == "" then domain = DOMAIN end
  local title = TITLES[status] or (status >= 500 and "Server Error" or "Client Error")
  if detail == "" then detail = title end
  local problem = {
    { "type", TYPE_BASE .. reason:lower():gsub("_", "-") },
    { "title", title },
    { "status", status },
    { "detail", detail },
    { "instance", str(meta.path) },
    { "reason", reason },
    { "domain", domain },
    { "violations", violations },
    { "request_id", str(meta.request_id) },
  }
  return status, encode_object(problem), parsed and parsed.retry_after
end

---------------------------------------------------------------------------------------------------
-- filter callbacks
---------------------------------------------------------------------------------------------------

---------------------------------------------------------------------------------------------------
-- request headers: only an allow-list reaches the gRPC upstream as metadata, each value checked
---------------------------------------------------------------------------------------------------

-- the edge HTTP app's routes keep their headers (cookies, Stripe-Signature, Last-Event-ID …)
local HTTP_APP_PATHS = CONFIG.http_app_paths or {
  ["/openapi.json"] = true, ["/docs"] = true, ["/healthz"] = true, ["/metrics"] = true,
}
local HTTP_APP_PREFIXES = CONFIG.http_app_prefixes or { "/webhooks/", "/clinic/" }

-- header -> {max length, Lua pattern the whole value must match (nil: printable ASCII), on_bad}
-- on_bad "drop": an unusable value is ignored (W3C trace context says so); "replace": a fresh
-- request id instead of the client's; otherwise 400.
local ALLOWED = {
  ["authorization"] = { 8192 },
  ["idempotency-key"] = { 255 },
  ["x-request-id"] = { 128, "^[%w%-%._:]+$", "replace" },
  ["traceparent"] = { 55, "^%x%x%-%x+%-%x+%-%x%x$", "drop" },
  ["tracestate"] = { 512, nil, "drop" },
  ["accept-language"] = { 256, "^[%w%-,;=%.%* ]+$", "drop" },
  ["user-agent"] = { 512, nil, "drop" }, -- kept for the access log
  -- what Envoy and gRPC need themselves
  ["content-type"] = { 256 }, ["content-length"] = { 20 }, ["te"] = { 32 },
  ["grpc-timeout"] = { 12, "^%d+[HMSmun]$" }, ["grpc-encoding"] = { 64 }, ["grpc-accept-encoding"] = { 256 },
  ["x-forwarded-for"] = { 1024 }, ["x-forwarded-proto"] = { 8 },
}

local function http_app_route(path)
  if HTTP_APP_PATHS[path] then return true end
  for _, prefix in ipairs(HTTP_APP_PREFIXES) do
    if path:sub(1, #prefix) == prefix then return true end
  end
  return false
end

local function printable(v)
  return not v:find("[^\32-\126]")
end

local function fresh_request_id()
  local hex = {}
  for i = 1, 32 do hex[i] = string.format("%x", math.random(0, 15)) end
  local h = table.concat(hex)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-a" .. h:sub(18, 20) .. "-" .. h:sub(21, 32)
end

local function bad_header(request_handle, name, description, path, request_id)
  local body = encode_object({
    { "type", TYPE_BASE .. "invalid-header" }, { "title", "Bad Request" }, { "status", 400 },
    { "detail", "header " .. name .. ": " .. description }, { "instance", path },
    { "reason", "INVALID_HEADER" }, { "domain", DOMAIN },
    { "violations", { { { "field", "header:" .. name }, { "description", description },
      { "reason", "INVALID_HEADER" } } } },
    { "request_id", request_id },
  })
  request_handle:respond({ [":status"] = "400", ["content-type"] = "application/problem+json" }, body)
end

-- returns false when it answered the request itself (400)
local function filter_headers(request_handle, headers, path)
  local drop, replace = {}, {}
  local request_id = headers:get("x-request-id") or ""
  if #request_id > 128 or not request_id:find("^[%w%-%._:]*$") then request_id = "" end
  for name, value in pairs(headers) do
    if name:sub(1, 1) ~= ":" and name:sub(1, 8) ~= "x-envoy-" then
      local rule = ALLOWED[name]
      if not rule then
        drop[#drop + 1] = name
      else
        local ok = #value <= rule[1] and printable(value) and (rule[2] == nil or value:find(rule[2]) ~= nil)
        if not ok then
          if rule[3] == "drop" then
            drop[#drop + 1] = name
          elseif rule[3] == "replace" then
            replace[name] = fresh_request_id()
          else
            bad_header(request_handle, name, "must be at most " .. rule[1] ..
              " printable ASCII characters" .. (rule[2] and " of the documented form" or ""), path,
              request_id)
            return false
          end
        end
      end
    end
  end
  for _, name in ipairs(drop) do
    headers:remove(name)
  end
  for name, value in pairs(replace) do
    headers:replace(name, value)
  end
  return true
end

-- authentication first: a protected route (its RPC is not declared public) without a bearer token
-- is 401 before the transcoder parses the body (the BFF validates the token itself)
local PROTECTED = CONFIG.protected or {} -- { {method = "POST", pattern = "^/v1/bookings$"}, ... }

local function protected_route(method, path)
  for _, route in ipairs(PROTECTED) do
    if route.method == method and path:match(route.pattern) then return true end
  end
  return false
end

local function has_bearer(headers)
  local value = headers:get("authorization") or ""
  local token = value:match("^[Bb][Ee][Aa][Rr][Ee][Rr] +([^ ].*)$")
  if token and value:sub(1, 7) ~= "Bearer " or (token and value:sub(8, 8) == " ") then
    -- the scheme is case-insensitive (RFC 9110) and the BFF reads it so; Envoy's jwt_authn looks for
    -- exactly "Bearer <token>"
    headers:replace("authorization", "Bearer " .. token)
  end
  return token ~= nil
end

local function creates(method, path)
  for _, route in ipairs(CREATED) do
    if route.method == method and path and path:match(route.pattern) then
      return true
    end
  end
  return false
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local path = headers:get(":path") or ""
  local q = path:find("?", 1, true)
  if q then path = path:sub(1, q - 1) end
  if not http_app_route(path) then
    if not filter_headers(request_handle, headers, path) then
      return
    end
    if protected_route(headers:get(":method") or "", path) and not has_bearer(headers) then
      local rid = headers:get("x-request-id") or ""
      request_handle:respond({ [":status"] = "401", ["content-type"] = "application/problem+json",
        ["www-authenticate"] = "Bearer" }, encode_object({
        { "type", TYPE_BASE .. "token-missing" }, { "title", "Unauthorized" }, { "status", 401 },
        { "detail", "missing bearer token" }, { "instance", path }, { "reason", "TOKEN_MISSING" },
        { "domain", DOMAIN }, { "violations", {} }, { "request_id", rid },
      }))
      return
    end
  end
  local md = request_handle:streamInfo():dynamicMetadata()
  md:set(MD, "method", headers:get(":method") or "")
  md:set(MD, "path", path)
  md:set(MD, "request_id", headers:get("x-request-id") or "")
end

-- Envoy's jwt_authn rejected the bearer token (its local reply: 401, text/plain, e.g. "Jwt is
-- expired", "Jwt verification fails", with `www-authenticate: Bearer realm="<url>", error=...`):
-- the problem says TOKEN_EXPIRED or TOKEN_INVALID, as the BFF would ("Jwks doesn't have key to
-- match kid": a retired or foreign key, invalid too).  "Jwks remote fetch is failed" is no fault of
-- the client: auth_svc's keys could not be fetched (yet), 503 AUTH_KEYS_UNAVAILABLE, retry later.
local function jwt_problem(raw, meta)
  local text = raw:match("^[^\n]*") or ""
  if text:find("^Jwks") and text:find("fetch", 1, true) then
    return 503, "AUTH_KEYS_UNAVAILABLE", "the keys that verify sign-ins are not available yet; retry later"
  end
  if text:find("expired", 1, true) then
    return 401, "TOKEN_EXPIRED", "the bearer token has expired; sign in again"
  end
  return 401, "TOKEN_INVALID", "the bearer token is not valid"
end

-- (jwt_authn answers 403 to a token whose audience is not ours; for the client that is a token not
-- valid here, like any other: 401)
local function jwt_rejection(headers, status, content_type)
  if (status ~= 401 and status ~= 403) or content_type:find("json", 1, true) then return false end
  local www = headers:get("www-authenticate") or ""
  return www:find("^Bearer realm=") ~= nil
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local status = tonumber(headers:get(":status")) or 0
  local content_type = (headers:get("content-type") or ""):lower()
  if content_type:find("application/grpc", 1, true) then
    return -- a native gRPC client talking through the edge: errors travel as grpc-status
  end
  -- transcoded responses carry the gRPC status as headers too; REST clients get the HTTP status
  for _, name in ipairs(GRPC_HEADERS) do
    headers:remove(name)
  end
  local meta = response_handle:streamInfo():dynamicMetadata():get(MD) or {}
  if status < 400 then
    if status == 200 and creates(meta.method, meta.path) then
      headers:replace(":status", "201")
    end
    return
  end
  if content_type:find("application/problem+json", 1, true) then
    return -- already shaped (the edge HTTP app speaks problem+json itself)
  end
  local from_jwt = jwt_rejection(headers, status, content_type)
  local body = response_handle:body(true)
  local raw = ""
  if body and body:length() > 0 then
    raw = body:getBytes(0, body:length())
  end
  local new_status, out, retry_after
  if from_jwt then
    local reason, detail
    new_status, reason, detail = jwt_problem(raw, meta)
    out = encode_object({
      { "type", TYPE_BASE .. reason:lower():gsub("_", "-") }, { "title", TITLES[new_status] or "Unauthorized" },
      { "status", new_status }, { "detail", detail }, { "instance", str(meta.path) }, { "reason", reason },
      { "domain", DOMAIN }, { "violations", {} }, { "request_id", str(meta.request_id) },
    })
  else
    new_status, out, retry_after = build_problem(status, content_type, raw, meta)
  end
  body:setBytes(out)
  -- wrappers taken before body() are dead once the script resumed with the full body
  headers = response_handle:headers()
  headers:replace(":status", tostring(new_status))
  headers:replace("content-type", "application/problem+json")
  headers:replace("content-length", tostring(#out))
  local reason = out:match('"reason":"([^"]*)"')
  if reason == "TOKEN_INVALID" or reason == "TOKEN_EXPIRED" then
    -- RFC 6750 §3.1, the same whether Envoy or the BFF refused the token (no realm: it named the URL)
    headers:replace("www-authenticate", 'Bearer error="invalid_token"')
  elseif new_status ~= 401 then
    headers:remove("www-authenticate")
  end
  if retry_after then
    headers:replace("retry-after", retry_after) -- e.g. a throttled login (RESOURCE_EXHAUSTED)
  end
  response_handle:streamInfo():dynamicMetadata():set(MD, "reason", reason)
end
