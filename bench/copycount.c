/*
 * copycount.c: an LD_PRELOAD library counting the bytes that memcpy() and
 * memmove() copy for callers in the main executable or in libssh.so (so
 * libssh's copies, whether libssh is linked statically or not, and
 * tunneld's own; not libcrypto's, libevent's or libc's internal ones).
 * bench/libssh_profile.py uses it for the copies-per-GiB figures of
 * docs/benchmarks.md ("libssh receive path").
 *
 * The counts are written at exit to the file named by COPYCOUNT_OUT, one
 * line: "memcpy CALLS BYTES memmove CALLS BYTES big BYTES", where big is
 * the bytes of the calls of 1 KiB or more (the per-byte copies of the data
 * path, not the bookkeeping).
 *
 *   cc -O2 -shared -fPIC -o copycount.so bench/copycount.c -ldl
 */
#define _GNU_SOURCE
#include <sys/types.h>

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void	*(*copy_fn)(void *, const void *, size_t);

static copy_fn		 real_memcpy, real_memmove;
static uintptr_t	 lo[2], hi[2];	/* main executable, libssh.so */
static unsigned long long n_cpy, b_cpy, n_mov, b_mov, b_big;
static int		 ready;

/* Record the text ranges of the main executable and of libssh.so. */
static int
range_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	const char	*name = info->dlpi_name;
	int		 i, which;

	(void)size;
	(void)arg;
	if (name == NULL || *name == '\0')
		which = 0;
	else if (strstr(name, "/libssh.so") != NULL)
		which = 1;
	else
		return (0);
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a;

		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_X) == 0)
			continue;
		a = info->dlpi_addr + ph->p_vaddr;
		if (lo[which] == 0 || a < lo[which])
			lo[which] = a;
		if (a + ph->p_memsz > hi[which])
			hi[which] = a + ph->p_memsz;
	}
	return (0);
}

static void
slow_copy(void *dst, const void *src, size_t n)
{
	unsigned char		*d = dst;
	const unsigned char	*s = src;

	if (d < s)
		while (n-- > 0)
			*d++ = *s++;
	else
		while (n-- > 0)
			d[n] = s[n];
}

static int
ours(const void *ret)
{
	uintptr_t a = (uintptr_t)ret;

	if (!ready) {
		ready = 1;
		dl_iterate_phdr(range_cb, NULL);
	}
	return ((a >= lo[0] && a < hi[0]) || (a >= lo[1] && a < hi[1]));
}

__attribute__((constructor)) static void
copycount_init(void)
{
	real_memcpy = (copy_fn)dlsym(RTLD_NEXT, "memcpy");
	real_memmove = (copy_fn)dlsym(RTLD_NEXT, "memmove");
}

__attribute__((destructor)) static void
copycount_fini(void)
{
	const char	*path = getenv("COPYCOUNT_OUT");
	FILE		*f;

	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "memcpy %llu %llu memmove %llu %llu big %llu\n",
	    n_cpy, b_cpy, n_mov, b_mov, b_big);
	fclose(f);
}

void *
memcpy(void *dst, const void *src, size_t n)
{
	if (ours(__builtin_return_address(0))) {
		__atomic_add_fetch(&n_cpy, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&b_cpy, n, __ATOMIC_RELAXED);
		if (n >= 1024)
			__atomic_add_fetch(&b_big, n, __ATOMIC_RELAXED);
	}
	if (real_memcpy == NULL) {
		slow_copy(dst, src, n);
		return (dst);
	}
	return (real_memcpy(dst, src, n));
}

void *
memmove(void *dst, const void *src, size_t n)
{
	if (ours(__builtin_return_address(0))) {
		__atomic_add_fetch(&n_mov, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&b_mov, n, __ATOMIC_RELAXED);
		if (n >= 1024)
			__atomic_add_fetch(&b_big, n, __ATOMIC_RELAXED);
	}
	if (real_memmove == NULL) {
		slow_copy(dst, src, n);
		return (dst);
	}
	return (real_memmove(dst, src, n));
}
