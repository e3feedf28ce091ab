/* fuzz_limitproto.c - libFuzzer harness for the limiter wire protocol.
 * Any input must decode without a memory error; whatever decodes must
 * re-encode to exactly the same bytes (the format has one encoding per
 * message) and decode again to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limitproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lp_msg m, again;
	if (lp_decode(data, size, &m) != 0)
		return 0;
	struct buf b;
	buf_init(&b);
	if (lp_encode(&m, &b) != 0)
		abort(); /* decoded but not encodable: the validators disagree */
	if (b.len != size || memcmp(b.data, data, size) != 0)
		abort(); /* not canonical */
	if (lp_decode(b.data, b.len, &again) != 0 || again.type != m.type)
		abort();
	buf_free(&b);
	return 0;
}
