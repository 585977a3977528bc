/* The core error: filling one. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

void core_error_vset(struct core_error *e, enum core_err kind, const char *code, const char *fmt, va_list ap)
{
	e->kind = kind;
	e->code = code;
	e->status = NULL;
	e->size = 0;
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
}

void core_error_set(struct core_error *e, enum core_err kind, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(e, kind, code, fmt, ap);
	va_end(ap);
}

int core_error_invalid(struct core_error *e, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(e, CORE_INVALID, code, fmt, ap);
	va_end(ap);
	return -1;
}
