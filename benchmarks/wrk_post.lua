-- wrk script of the serving benchmark: every request is the same POST with a JSON body.
-- The body is read from the file named by WRK_BODY_FILE; WRK_AUTHORIZATION, when set and not
-- empty, is sent as the Authorization header (e.g. "Bearer titans_...").
-- Usage: WRK_BODY_FILE=body.json wrk -t2 -c16 -d20s --latency -s wrk_post.lua URL

local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
  error("set WRK_BODY_FILE to a file holding the JSON request body")
end
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local authorization = os.getenv("WRK_AUTHORIZATION")
if authorization ~= nil and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
