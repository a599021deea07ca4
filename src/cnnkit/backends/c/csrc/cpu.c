#include "cpu.h"

const char *cnk_isa(void) { return CNK_ISA; }

int cnk_cpu_level(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    /* libgcc's checks include the OS's XSAVE support for the ymm/zmm state, not just CPUID bits. */
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return 2;
    return avx2 ? 1 : 0;
#else
    return 0;
#endif
}

const char *cnk_status_message(int status)
{
    switch (status) {
    case CNK_OK: return "no error";
    case CNK_EINVAL: return "invalid argument (a size, stride or attribute the C kernel cannot take)";
    case CNK_ENOMEM: return "out of memory while allocating a C workspace";
    default: return "unknown error";
    }
}
