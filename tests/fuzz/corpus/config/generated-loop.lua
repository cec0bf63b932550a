-- Sites built in a loop, as a generated config for many sites does.
local sites = {}
for i = 1, 50 do
  sites[#sites + 1] = { hosts = { ("site%03d.example.com"):format(i), "*.site" .. i .. ".example.net" },
                        pool = i % 2 == 0 and "even" or "odd" }
end
sites[#sites + 1] = { default = true, routes = { { path = "/", respond = { status = 404, body = "no\n" } } } }
return {
  listeners = { { address = "127.0.0.1:8085" } },
  pools = { even = { servers = { "127.0.0.1:9001" } }, odd = { servers = { "127.0.0.1:9002" } } },
  sites = sites,
}
