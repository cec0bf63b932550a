return {
  listeners = { { address = "127.0.0.1:8084" } },
  pools = {
    a = { servers = { "127.0.0.1:9001" } },
    b = { servers = { "127.0.0.1:9002", "127.0.0.1:9003" } },
  },
  sites = { { hosts = { "example.com" }, pool = "a" } },
  limits = { hook_instructions = 100000 },
  hook = function(r)
    if r.path == "/deny" then
      return { status = 403, body = "denied " .. r.client .. "\n", headers = { ["X-Why"] = "hook" } }
    end
    if r.header("x-pool") then
      return { pool = r.header("x-pool"), server = r.header("x-server"),
               set_headers = { ["X-Hooked"] = r.method .. " " .. (r.query or "-") },
               remove_headers = { "X-Secret" } }
    end
  end,
}
