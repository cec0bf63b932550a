#include "core/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/common.h"

static ssize_t plain_recv(struct conn *c, void *dst, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, dst, len, 0);
		if (n > 0) {
			/* A short read drained the socket: the next byte brings a new edge. */
			if ((size_t)n < len && !(c->flags & CONN_RDHUP))
				c->flags &= (uint16_t)~CONN_READABLE;
			return n;
		}
		if (n == 0)
			return IO_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->flags &= (uint16_t)~CONN_READABLE;
			return 0;
		}
		return -errno;
	}
}

static ssize_t plain_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
	size_t want = 0;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	for (;;) {
		struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
		/* send() spares the kernel the iovec copy and checks of sendmsg(). */
		ssize_t n = iovcnt == 1 ? send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
					: sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n >= 0) {
			if ((size_t)n < want)
				c->flags &= (uint16_t)~CONN_WRITABLE;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->flags &= (uint16_t)~CONN_WRITABLE;
			return 0;
		}
		return -errno;
	}
}

static void plain_shutdown_write(struct conn *c) { shutdown(c->fd, SHUT_WR); }

static void plain_close(struct conn *c) { close(c->fd); }

static int plain_handshake(struct conn *c)
{
	(void)c;
	return 0;
}

const struct xprt_ops xprt_plain = {
	.recv = plain_recv,
	.sendv = plain_sendv,
	.shutdown_write = plain_shutdown_write,
	.close = plain_close,
	.handshake = plain_handshake,
};

static void conn_on_event(struct io_handler *h, uint32_t events)
{
	struct conn *c = container_of(h, struct conn, io);
	if (c->fd < 0)
		return;
	/* Errors and hang-ups are reported by the next recv/send. */
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= CONN_READABLE;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= CONN_RDHUP;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->flags |= CONN_WRITABLE;
	if ((c->flags & (CONN_READ_WANTS_WRITE | CONN_WRITABLE)) ==
	    (CONN_READ_WANTS_WRITE | CONN_WRITABLE))
		c->flags |= CONN_READABLE;
	if ((c->flags & (CONN_WRITE_WANTS_READ | CONN_READABLE)) ==
	    (CONN_WRITE_WANTS_READ | CONN_READABLE))
		c->flags |= CONN_WRITABLE;
	c->on_io(c);
}

#define CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP)

int conn_attach(struct conn *c, struct loop *loop, int fd, void (*on_io)(struct conn *c))
{
	c->io.on_event = conn_on_event;
	c->fd = fd;
	c->flags = 0;
	c->xprt = &xprt_plain;
	c->xprt_ctx = NULL;
	c->on_io = on_io;
	int err = loop_add_fd(loop, fd, CONN_EVENTS, &c->io);
	if (err < 0) {
		close(fd);
		c->fd = -1;
	}
	return err;
}

int conn_connect(struct conn *c, struct loop *loop, const struct sockaddr *addr, socklen_t len,
		 void (*on_io)(struct conn *c))
{
	c->fd = -1;
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int rc = connect(fd, addr, len);
	if (rc < 0 && errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	int err = conn_attach(c, loop, fd, on_io);
	if (err < 0)
		return err;
	if (rc < 0)
		c->flags |= CONN_CONNECTING;
	else
		c->flags |= CONN_WRITABLE;
	return 0;
}

int conn_finish_connect(struct conn *c)
{
	if (c->flags & CONN_CONNECTING) {
		if (!(c->flags & CONN_WRITABLE))
			return 1;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			return -errno;
		if (err)
			return -err;
		c->flags &= (uint16_t)~CONN_CONNECTING;
	}
	return c->flags & CONN_HANDSHAKE ? c->xprt->handshake(c) : 0;
}

int conn_move(struct conn *to, struct conn *from, struct loop *loop, void (*on_io)(struct conn *c))
{
	*to = *from;
	to->on_io = on_io;
	/* An event already taken for from finds it closed and is dropped. */
	from->fd = -1;
	from->xprt = &xprt_plain;
	from->xprt_ctx = NULL;
	if (to->xprt->moved)
		to->xprt->moved(to);
	int err = loop_mod_fd(loop, to->fd, CONN_EVENTS, &to->io);
	if (err < 0)
		conn_close(to);
	return err;
}

ssize_t conn_recv(struct conn *c, void *dst, size_t len) { return c->xprt->recv(c, dst, len); }

ssize_t conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
	return c->xprt->sendv(c, iov, iovcnt);
}

void conn_shutdown_write(struct conn *c)
{
	if (c->fd < 0 || (c->flags & CONN_SHUT_WR))
		return;
	c->flags |= CONN_SHUT_WR;
	c->xprt->shutdown_write(c);
}

void conn_close(struct conn *c)
{
	if (c->fd < 0)
		return;
	c->xprt->close(c);
	c->xprt = &xprt_plain;
	c->xprt_ctx = NULL;
	c->fd = -1;
	c->flags = 0;
}

ssize_t conn_fill(struct conn *c, struct buf *b, struct buf_pool *pool, uint32_t *parsed,
		  uint32_t *fwd)
{
	if (!(c->flags & CONN_READABLE))
		return 0;
	if (buf_reserve(b, pool) < 0)
		return -ENOMEM;
	if (b->head && pool->size - b->tail < pool->size / 4) {
		*parsed -= b->head;
		if (fwd)
			*fwd -= b->head;
		buf_make_room(b);
	}
	size_t room = pool->size - b->tail;
	if (!room)
		return 0;
	ssize_t n = conn_recv(c, buf_end(b), room);
	if (n > 0)
		b->tail += (uint32_t)n;
	else if (b->head == b->tail) {
		*parsed = 0;
		if (fwd)
			*fwd = 0;
		buf_release(b, pool);
	}
	return n;
}
