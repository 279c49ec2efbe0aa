//go:build linux && cgo

package main

/*
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// arena_cap is mallopt's answer: 1 taken, 0 refused, -1 no such setting
// (not glibc), -2 left to the operator's MALLOC_ARENA_MAX or
// GLIBC_TUNABLES' glibc.malloc.arena_max, -3 not set at all.
// 2 is mallocArenas.
static int arena_cap = -3;

// imbridge_cap_arenas runs when the program is loaded, before the Go
// runtime starts a thread: glibc fixes its arena limit at the first
// malloc of a second thread, so a cap set from Go would come too late.
__attribute__((constructor)) static void imbridge_cap_arenas(void) {
	arena_cap = -1;
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
	const char *env = getenv("MALLOC_ARENA_MAX");
	const char *tunables = getenv("GLIBC_TUNABLES");
	if ((env != NULL && env[0] != '\0') || (tunables != NULL && strstr(tunables, "arena_max") != NULL)) {
		arena_cap = -2;
		return;
	}
	arena_cap = mallopt(M_ARENA_MAX, 2);
#endif
}

static int arena_cap_result(void) { return arena_cap; }

static void *churn(void *arg) {
	(void)arg;
	for (int i = 0; i < 1000; i++) {
		free(malloc(4096 + i));
	}
	return NULL;
}

// arenas_after_threads runs n threads that allocate at once and returns how
// many arenas malloc_info then reports (-1 if it cannot tell).
static int arenas_after_threads(int n) {
#ifndef __GLIBC__
	(void)n;
	(void)churn;
	return -1;
#else
	pthread_t t[64];
	if (n > 64) n = 64;
	for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, churn, NULL);
	for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL) return -1;
	int ok = malloc_info(0, f) == 0;
	fclose(f);
	int count = 0;
	for (char *p = buf; ok && (p = strstr(p, "<heap nr=")) != NULL; p++) count++;
	free(buf);
	return ok ? count : -1;
#endif
}
*/
import "C"

// mallocArenaCap reports what became of the arena cap set when the program
// was loaded: ok when the C library took it, known false where it has no
// such setting or the operator's MALLOC_ARENA_MAX decides.
func mallocArenaCap() (ok, known bool) {
	r := C.arena_cap_result()
	return r == 1, r != -1 && r != -2
}

// mallocArenasAfterThreads runs n C threads that allocate at once and
// returns how many arenas the C allocator then holds (-1: cannot tell).
func mallocArenasAfterThreads(n int) int {
	return int(C.arenas_after_threads(C.int(n)))
}
