/* One LIST page as the network backends gather it: entries whose keys live in one growing arena. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "sto_internal.h"

int sto__page_push(sto__page_t *p, const char *key, size_t klen, uint64_t size, int is_dir)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        sto_entry_t *n = realloc(p->v, nc * sizeof(*n));
        if (!n)
            return RX_ENOMEM;
        p->v = n;
        p->cap = nc;
    }
    if (p->used + klen + 1 > p->acap) {
        size_t nc = p->acap ? p->acap * 2 : 64 * 1024;
        while (nc < p->used + klen + 1)
            nc *= 2;
        char *n = realloc(p->arena, nc);
        if (!n)
            return RX_ENOMEM;
        p->arena = n;
        p->acap = nc;
    }
    memcpy(p->arena + p->used, key, klen);
    p->arena[p->used + klen] = '\0';
    /* an offset for now: the arena may move; sto__page_entries turns it into a pointer */
    p->v[p->n].key = (const char *)(uintptr_t)p->used;
    p->v[p->n].size = size;
    p->v[p->n].is_dir = is_dir;
    p->n++;
    p->used += klen + 1;
    return 0;
}

sto_entry_t *sto__page_entries(sto__page_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        p->v[i].key = p->arena + (uintptr_t)p->v[i].key;
    return p->v;
}

void sto__page_reset(sto__page_t *p)
{
    p->n = 0;
    p->used = 0;
}

void sto__page_free(sto__page_t *p)
{
    free(p->v);
    free(p->arena);
    memset(p, 0, sizeof(*p));
}
