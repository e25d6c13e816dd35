-- wrk-put.lua: durable PUT for wrk, as -role=bench -ops=put sends it
-- (.ci/bench-write.sh): one document of about 1 KiB per request, into
-- database "bench", each connection walking its own sequence over 1000
-- keys; the bearer key is $ADMIN_KEY.
local threads = 0
local doc = '{"role":"user","content":"' .. string.rep("x", 994) .. '"}'

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  n = 0
  headers = {["Authorization"] = "Bearer " .. os.getenv("ADMIN_KEY"), ["Content-Type"] = "application/json"}
end

function request()
  n = n + 1
  local key = string.format("k%06d", (id * 7919 + n * 104729) % 1000)
  return wrk.format("PUT", "/entity/bench", headers, '{"' .. key .. '":' .. doc .. '}')
end
