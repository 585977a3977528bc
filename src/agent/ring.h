/* A command's output ring: typed records (stream + bytes) at absolute offsets
 * counted over all streams; when full, the oldest bytes go. */
#ifndef SANDBAR_AGENT_RING_H
#define SANDBAR_AGENT_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring;

/* cap: bytes of output kept (at least 1). Never NULL (aborts on no memory). */
struct ring *ring_new(size_t cap);
void ring_free(struct ring *r);
void ring_write(struct ring *r, uint8_t stream, const void *data, size_t len);
/* The oldest offset still kept, and the offset after the last byte written. */
uint64_t ring_start(const struct ring *r);
uint64_t ring_end(const struct ring *r);
/* Bytes ring_write may take now without dropping any byte at or after keep
 * (a lossless reader's oldest unacknowledged offset): 0 when full. Counts the
 * record a write may add, too. */
size_t ring_room(const struct ring *r, uint64_t keep);
/* Copies up to max bytes from offset (ring_start <= offset) into dst, all of
 * one stream (adjacent records of that stream coalesced): the count, 0 at the
 * end or when offset is out of the ring. *stream gets the stream. */
size_t ring_copy(const struct ring *r, uint64_t offset, size_t max, uint8_t *stream, uint8_t *dst);
/* Cuts the buffers to what they hold (the writer is done; a later write
 * grows them again). */
void ring_trim(struct ring *r);
/* Memory the ring holds now, buffers included. */
size_t ring_bytes(const struct ring *r);
/* Records currently kept (for tests). */
size_t ring_records(const struct ring *r);

#endif
