#include "proxy/front.h"

#include <string.h>
#include <unistd.h>

#include "core/conn.h"

/* Protocols sluice speaks to clients: a handful, registered once before main(). */
#define FRONTS_MAX 8

static const struct front_ops *fronts[FRONTS_MAX];
static size_t nfronts;

void front_register(const struct front_ops *ops)
{
	BUG_ON(nfronts == FRONTS_MAX || front_find(ops->name));
	fronts[nfronts++] = ops;
}

const struct front_ops *front_find(const char *name)
{
	for (size_t i = 0; i < nfronts; i++)
		if (!strcmp(fronts[i]->name, name))
			return fronts[i];
	return NULL;
}

int front_take(struct conn *c, struct loop *loop, const struct accepted *a, void (*on_io)(struct conn *c))
{
	return a->conn ? conn_move(c, a->conn, loop, on_io) : conn_attach(c, loop, a->fd, on_io);
}

void front_drop(const struct accepted *a)
{
	if (a->conn)
		conn_close(a->conn);
	else
		close(a->fd);
}
