-- wrk script: Asaas deliveries with a unique event id each, a ~1 KiB body, the webhook token header.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("ASAAS_TOKEN") or "bench-token"
  run = os.getenv("RUN_ID") or "0"
  padding = string.rep("x", 620)
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["asaas-access-token"] = token
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"id":"evt_%s_%d_%d","event":"PAYMENT_RECEIVED","dateCreated":"2026-12-09 14:00:00",' ..
    '"payment":{"object":"payment","id":"pay_bench_%d_%d","customer":"cus_000005113026",' ..
    '"value":199.9,"netValue":195.41,"billingType":"PIX","status":"RECEIVED",' ..
    '"externalReference":"chg_bench","description":"%s"}}', run, id, counter, id, counter, padding)
  return wrk.format("POST", nil, nil, body)
end
