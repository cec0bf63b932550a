return {
  listeners = { { address = "127.0.0.1:99999", pool = "nope" } },
  pools = { web = { servers = { "10.0.0.1:80" }, weight = -3, balance = "fastest" } },
  timeouts = { idle = -1 },
  unknown = true,
}
