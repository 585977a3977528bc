/* Private to src/docker: multi-step operations as cancellable handles, owned
 * per-call contexts, URL encoding, and the response parser entry for fuzzing. */
#ifndef SANDBAR_DOCKER_CLIENT_INTERNAL_H
#define SANDBAR_DOCKER_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "docker/client.h"

/* ctx is freed with free_fn when the call is destroyed (after its callback, or
 * on cancel), so single-step wrappers never leak their context. */
void docker_call_set_ctx(struct docker_call *call, void *ctx, void (*free_fn)(void *));

/* An op handle: a docker_call that owns a sequence of steps. docker_call_cancel
 * on it calls cancel(ctx), which must cancel the step in flight and free ctx. */
struct docker_call *docker_op_new(struct docker *d, void (*cancel)(void *ctx), void *ctx);
/* The op finished (its user callback has run): free the handle, not ctx. */
void docker_op_free(struct docker_call *op);

struct event_base *docker_base(struct docker *d);

/* Appends s percent-encoded for a query string. */
void docker_url_encode(struct evbuffer *out, const char *s);

/* Fuzzing: parse data as the response to a call of the given kind, as if it
 * arrived in pieces of split bytes (0: all at once), then EOF. Delivers the
 * result and frees. */
enum docker_fuzz_mode { DOCKER_FUZZ_JSON, DOCKER_FUZZ_STREAM, DOCKER_FUZZ_UPGRADE, DOCKER_FUZZ_MODE_MAX };
void docker_response_fuzz(enum docker_fuzz_mode mode, const uint8_t *data, size_t len, size_t split);

#endif
