/*
 * A stand-in for one of the NVIDIA driver libraries other than NVML (libcuda, libnvidia-encode, ...), built
 * by tests/kit once per soname. It is a real ELF shared object with the real soname, so ldconfig caches it,
 * ld.so can load it and the engine can discover, mount and link it; it does none of the library's work.
 */
#ifndef KIT_STUB_SONAME
#error "KIT_STUB_SONAME must be defined"
#endif
#ifndef KIT_DRIVER_VERSION
#error "KIT_DRIVER_VERSION must be defined"
#endif

__attribute__((visibility("default"))) const char gpudoctor_kit_stub[] =
    "gpudoctor test kit stand-in for " KIT_STUB_SONAME " (driver " KIT_DRIVER_VERSION ")";
