/*
 * A transaction: one request and its response, whatever protocol the
 * client speaks.
 */
#ifndef SLUICE_TXN_H
#define SLUICE_TXN_H

#include <stddef.h>

/* The size of a transaction, for the proxy's pool of them. */
size_t txn_size(void);

#endif
