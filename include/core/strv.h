/* NULL-terminated lists of strings (argv, "K=V" environments): freed and
 * copied in one place. */
#ifndef SANDBAR_CORE_STRV_H
#define SANDBAR_CORE_STRV_H

/* Frees each string and the list; NULL is fine. */
void strv_free(char **v);
/* A deep copy (NULL for NULL); aborts when out of memory. */
char **strv_dup(const char *const *v);

#endif
