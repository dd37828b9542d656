/* Portable build (packaging/portable.cmake) only: Debian 12's static libevent calls arc4random
 * and arc4random_buf, and so does GCC 12's static libstdc++ (std::random_device); glibc has them
 * only since 2.36, RHEL 9 has 2.34. These definitions, linked
 * before libc, take their place; both draw from the kernel's getrandom() (glibc 2.25). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>

void arc4random_buf(void* buf, size_t n) {
    unsigned char* p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            abort(); /* like glibc's arc4random: no silent weak randomness */
        }
        p += got;
        n -= (size_t)got;
    }
}

uint32_t arc4random(void) {
    uint32_t v;
    arc4random_buf(&v, sizeof v);
    return v;
}
