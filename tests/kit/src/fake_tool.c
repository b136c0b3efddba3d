/*
 * A stand-in for a driver binary other than nvidia-smi (nvidia-persistenced, nvidia-debugdump,
 * nvidia-cuda-mps-control, nvidia-cuda-mps-server), built by tests/kit. It is a real executable linked only
 * against glibc, so the engine can discover, mount and run it in a container; it does none of the tool's
 * work. It prints what it is and exits 0.
 */
#include <stdio.h>

#ifndef KIT_TOOL_NAME
#error "KIT_TOOL_NAME must be defined"
#endif
#ifndef KIT_DRIVER_VERSION
#error "KIT_DRIVER_VERSION must be defined"
#endif

int main(void) {
    printf("%s: gpudoctor test kit stand-in (driver %s)\n", KIT_TOOL_NAME, KIT_DRIVER_VERSION);
    return 0;
}
