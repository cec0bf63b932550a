/*
 * A tunnel: after a 101 Switching Protocols, the client's and the
 * backend's bytes go across raw, both ways, until both sides are done. A
 * side's FIN is passed on once its bytes are through, so that either may
 * end its direction first.
 */

#include "core/conn.h"
#include "proxy/back.h"
#include "proxy/txn.h"

int tunnel_step(struct txn *t)
{
	const struct stream_ops *ops = t->ops;
	struct iovec in = {0};
	int progress = ops->read_body(t, &in);
	if (progress < 0)
		return progress;
	bool wrote = false;
	ssize_t taken = t->bc ? back_write(t, &in, &wrote) : 0;
	if (taken < 0) {
		int r = txn_backend_failed(t, 502, "backend write failed", FAIL_ERROR);
		return r < 0 ? r : 1;
	}
	if (taken > 0)
		ops->consume_body(t, (size_t)taken);
	progress |= wrote;
	int r = txn_tunnel_read(t);
	if (r < 0)
		return r;
	progress |= r;
	if ((r = txn_tunnel_send(t)) < 0)
		return r;
	progress |= r;
	if (progress)
		t->last_io_ms = txn_now_ms(t);
	bool client_done = ops->client_done(t);
	if (client_done && t->bc)
		conn_shutdown_write(&t->bc->conn);
	bool owed = txn_response_owed(t);
	if (t->back_eof && !owed)
		ops->shutdown(t);
	if (client_done && t->back_eof && !owed) {
		ops->close(t);
		return -1;
	}
	return progress;
}
