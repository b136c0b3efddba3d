/*
 * A simulated libnvidia-ml.so for gpudoctor's tests (built by tests/kit, never shipped).
 *
 * It has the real soname (libnvidia-ml.so.1), the real entry-point names, signatures and struct layouts of
 * nvml.h, and it follows the real library's rules where gpudoctor depends on them:
 *
 *   - init fails with NVML_ERROR_DRIVER_NOT_LOADED when <devroot>/nvidiactl is missing (or is not a
 *     character device), as the real library does when nvidia.ko is not loaded;
 *   - init fails with NVML_ERROR_NO_PERMISSION when nvidiactl is not accessible (see node_access());
 *   - init fails with NVML_ERROR_UNKNOWN when opening nvidiactl is refused with EPERM, which is what a
 *     device cgroup that lost the rule does to real containers ("Failed to initialize NVML: Unknown Error");
 *   - KIT_RM_MISMATCH simulates a library newer than the loaded kernel module
 *     (NVML_ERROR_LIB_RM_VERSION_MISMATCH);
 *   - a GPU is visible only while <devroot>/nvidia<minor> exists, so inside a container that was given
 *     /dev/nvidia1 only, one GPU is seen and it is index 0, as with the real driver.
 *
 * <devroot> is $GPUDOCTOR_FAKE_DEV_ROOT when set (only this fake reads it), else /dev.
 * The GPU list and versions come from kit_config.h, generated per scenario by tests/kit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "kit_config.h"

#define EXPORT __attribute__((visibility("default")))

typedef enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999
} nvmlReturn_t;

typedef enum { NVML_FEATURE_DISABLED = 0, NVML_FEATURE_ENABLED = 1 } nvmlEnableState_t;

/* nvml.h: NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE 16, NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE 32 */
typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;    /* (device id << 16) | vendor id */
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

/* The layout that nvmlDeviceGetPciInfo (v1, NVML 4.x-8.x) filled. */
typedef struct {
    char busId[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    unsigned int reserved0, reserved1, reserved2, reserved3;
} nvmlPciInfo_v1_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

/* nvml.h: #define nvmlMemory_v2 NVML_STRUCT_VERSION(Memory, 2) == sizeof | (2 << 24) */
#define NVML_MEMORY_V2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

struct kit_gpu {
    const char *name;
    const char *uuid;
    unsigned int domain, bus, device;
    unsigned int minor;
    unsigned long long memory_mib;
    unsigned long long memory_used_mib;
    unsigned int pci_device_id;
    unsigned int pci_subsystem_id;
    int persistence; /* 0 off, 1 on */
    int mig;         /* -1 not supported, 0 disabled, 1 enabled */
    int fan_percent; /* -1: no fan (data-center boards), so NVML says NOT_SUPPORTED */
    unsigned int temperature_c;
    unsigned int power_draw_w;
    unsigned int power_limit_w;
    long long ecc_errors; /* -1: no ECC (consumer boards) */
};

static const struct kit_gpu kit_gpus[] = KIT_GPUS;
#define KIT_GPU_TOTAL ((int)(sizeof(kit_gpus) / sizeof(kit_gpus[0])))

struct nvmlDevice_st {
    const struct kit_gpu *gpu;
    unsigned int index; /* position among the visible GPUs, as NVML numbers them */
    nvmlReturn_t access; /* result of checking /dev/nvidia<minor> at init */
};
typedef struct nvmlDevice_st *nvmlDevice_t;

static struct nvmlDevice_st visible[KIT_GPU_TOTAL > 0 ? KIT_GPU_TOTAL : 1];
static unsigned int visible_count;
static int init_refcount;

static const char *dev_root(void) {
    const char *root = getenv("GPUDOCTOR_FAKE_DEV_ROOT");
    return (root != NULL && root[0] != '\0') ? root : "/dev";
}

static int in_groups(gid_t gid) {
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return 1;
    return 0;
}

/*
 * Decide whether this process may use a device node, the way the kernel's permission check reads the mode
 * bits for a process WITHOUT CAP_DAC_OVERRIDE: the owner bits when the effective uid owns the node, else
 * the group bits when the node's group is the effective or a supplementary group, else the other bits.
 * Read and write are both needed (the real library opens the nodes O_RDWR).
 *
 * Root is deliberately not exempt: tests run as root and must be able to simulate the non-root user whom
 * a 0660 root:video node locks out. Then the node is really opened: EACCES (a non-root test run, SELinux,
 * a nodev mount) is NO_PERMISSION, EPERM (a device cgroup that denies the node) is UNKNOWN, as with the
 * real driver. Other errors (ENXIO: no kernel driver behind the major here) are ignored.
 */
static nvmlReturn_t node_access(const char *path, const struct stat *st) {
    mode_t mode = st->st_mode;
    int ok;
    if (st->st_uid == geteuid())
        ok = (mode & S_IRUSR) && (mode & S_IWUSR);
    else if (st->st_gid == getegid() || in_groups(st->st_gid))
        ok = (mode & S_IRGRP) && (mode & S_IWGRP);
    else
        ok = (mode & S_IROTH) && (mode & S_IWOTH);
    if (!ok)
        return NVML_ERROR_NO_PERMISSION;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) {
        close(fd);
        return NVML_SUCCESS;
    }
    if (errno == EACCES)
        return NVML_ERROR_NO_PERMISSION;
    if (errno == EPERM)
        return NVML_ERROR_UNKNOWN;
    return NVML_SUCCESS;
}

/* 1 when the path is a character device (following links, as open() would). */
static int char_node(const char *path, struct stat *st) {
    return stat(path, st) == 0 && S_ISCHR(st->st_mode);
}

static nvmlReturn_t do_init(void) {
#if KIT_HANG_ON_INIT
    for (;;)
        pause();
#endif
#if KIT_CRASH_ON_INIT
    raise(SIGSEGV);
#endif
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/nvidiactl", dev_root());
    if (!char_node(path, &st))
        return NVML_ERROR_DRIVER_NOT_LOADED;
    nvmlReturn_t ctl = node_access(path, &st);
    if (ctl != NVML_SUCCESS)
        return ctl;
#if KIT_RM_MISMATCH
    return NVML_ERROR_LIB_RM_VERSION_MISMATCH;
#endif
    if (__sync_fetch_and_add(&init_refcount, 1) > 0)
        return NVML_SUCCESS;
    visible_count = 0;
    for (int i = 0; i < KIT_GPU_TOTAL; i++) {
        snprintf(path, sizeof path, "%s/nvidia%u", dev_root(), kit_gpus[i].minor);
        if (!char_node(path, &st))
            continue;
        visible[visible_count].gpu = &kit_gpus[i];
        visible[visible_count].index = visible_count;
        visible[visible_count].access = node_access(path, &st);
        visible_count++;
    }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit(void) { return do_init(); }
EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init(); }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags; /* NO_GPUS/NO_ATTACH change nothing here: init never fails for want of GPUs */
    return do_init();
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    int prev = init_refcount;
    while (prev > 0 && !__sync_bool_compare_and_swap(&init_refcount, prev, prev - 1))
        prev = init_refcount;
    return prev > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    /* The real library's texts, as pynvml and nvidia-smi print them. */
    switch ((int)result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 25: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

static nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src) {
    if (dst == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

#define REQUIRE_INIT()                                                                                     \
    do {                                                                                                   \
        if (init_refcount <= 0)                                                                            \
            return NVML_ERROR_UNINITIALIZED;                                                               \
    } while (0)

/* The NVML version is a constant of the library, readable before init (nvidia-smi prints it on failure). */
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    return copy_string(version, length, KIT_NVML_VERSION);
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    REQUIRE_INIT();
    return copy_string(version, length, KIT_DRIVER_VERSION);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion) {
    if (cudaDriverVersion == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *cudaDriverVersion = KIT_CUDA_VERSION;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount) {
    REQUIRE_INIT();
    if (deviceCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = visible_count;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) { return nvmlDeviceGetCount(deviceCount); }

static nvmlReturn_t hand_out(struct nvmlDevice_st *dev, nvmlDevice_t *device) {
    if (dev->access != NVML_SUCCESS)
        return dev->access;
    *device = dev;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    REQUIRE_INIT();
    if (device == NULL || index >= visible_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    return hand_out(&visible[index], device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex(index, device);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    REQUIRE_INIT();
    if (uuid == NULL || device == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int i = 0; i < visible_count; i++)
        if (strcmp(visible[i].gpu->uuid, uuid) == 0)
            return hand_out(&visible[i], device);
    return NVML_ERROR_NOT_FOUND;
}

/* Accepts "domain:bus:device.function" with a 4- or 8-digit domain, any hex case, as NVML does. */
static int parse_bus_id(const char *text, unsigned int *domain, unsigned int *bus, unsigned int *device) {
    unsigned int fn;
    char tail;
    if (sscanf(text, "%x:%x:%x.%x%c", domain, bus, device, &fn, &tail) == 4)
        return fn == 0;
    *domain = 0;
    if (sscanf(text, "%x:%x.%x%c", bus, device, &fn, &tail) == 3)
        return fn == 0;
    return 0;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device) {
    REQUIRE_INIT();
    unsigned int domain, bus, dev;
    if (pciBusId == NULL || device == NULL || !parse_bus_id(pciBusId, &domain, &bus, &dev))
        return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned int i = 0; i < visible_count; i++) {
        const struct kit_gpu *g = visible[i].gpu;
        if (g->domain == domain && g->bus == bus && g->device == dev)
            return hand_out(&visible[i], device);
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByPciBusId(pciBusId, device);
}

/* A handle is valid only if it points into our table; anything else is an invalid argument. */
static int valid(nvmlDevice_t device) {
    return device != NULL && device >= &visible[0] && device < &visible[visible_count];
}

#define REQUIRE_DEVICE(device)                                                                             \
    do {                                                                                                   \
        REQUIRE_INIT();                                                                                    \
        if (!valid(device))                                                                                \
            return NVML_ERROR_INVALID_ARGUMENT;                                                            \
    } while (0)

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    REQUIRE_DEVICE(device);
    return copy_string(name, length, device->gpu->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    REQUIRE_DEVICE(device);
    return copy_string(uuid, length, device->gpu->uuid);
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber) {
    REQUIRE_DEVICE(device);
    if (minorNumber == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *minorNumber = device->gpu->minor;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    REQUIRE_DEVICE(device);
    if (index == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = device->index;
    return NVML_SUCCESS;
}

static void fill_pci(const struct kit_gpu *g, nvmlPciInfo_t *pci) {
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", g->domain, g->bus, g->device);
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", g->domain, g->bus, g->device);
    pci->domain = g->domain;
    pci->bus = g->bus;
    pci->device = g->device;
    pci->pciDeviceId = (g->pci_device_id << 16) | 0x10DEu;
    pci->pciSubSystemId = g->pci_subsystem_id;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    REQUIRE_DEVICE(device);
    if (pci == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    fill_pci(device->gpu, pci);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    return nvmlDeviceGetPciInfo_v3(device, pci);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_v1_t *pci) {
    REQUIRE_DEVICE(device);
    if (pci == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    nvmlPciInfo_t full;
    fill_pci(device->gpu, &full);
    memset(pci, 0, sizeof *pci);
    memcpy(pci->busId, full.busIdLegacy, sizeof pci->busId);
    pci->domain = full.domain;
    pci->bus = full.bus;
    pci->device = full.device;
    pci->pciDeviceId = full.pciDeviceId;
    pci->pciSubSystemId = full.pciSubSystemId;
    return NVML_SUCCESS;
}

/* What the driver itself holds on an idle GPU (a few MiB on some boards) is compiled in as "used". */
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    REQUIRE_DEVICE(device);
    if (memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = device->gpu->memory_mib * 1024ULL * 1024ULL;
    memory->used = device->gpu->memory_used_mib * 1024ULL * 1024ULL;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    REQUIRE_DEVICE(device);
    if (memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != NVML_MEMORY_V2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = device->gpu->memory_mib * 1024ULL * 1024ULL;
    memory->reserved = 0;
    memory->used = device->gpu->memory_used_mib * 1024ULL * 1024ULL;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode) {
    REQUIRE_DEVICE(device);
    if (mode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *mode = device->gpu->persistence ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) {
    REQUIRE_DEVICE(device);
    if (currentMode == NULL || pendingMode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->mig < 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = (unsigned int)device->gpu->mig;
    *pendingMode = (unsigned int)device->gpu->mig;
    return NVML_SUCCESS;
}

/* --- sensors: fixed readings compiled in per GPU, so nvidia-smi's summary has real-looking rows -------- */

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed) {
    REQUIRE_DEVICE(device);
    if (speed == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->fan_percent < 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *speed = (unsigned int)device->gpu->fan_percent;
    return NVML_SUCCESS;
}

/* sensorType: NVML_TEMPERATURE_GPU (0) is the only sensor NVML defines. */
EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp) {
    REQUIRE_DEVICE(device);
    if (temp == NULL || sensorType != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    *temp = device->gpu->temperature_c;
    return NVML_SUCCESS;
}

/* nvmlPstates_t: an idle simulated GPU stays in P0 as data-center GPUs with persistence do. */
EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, int *pState) {
    REQUIRE_DEVICE(device);
    if (pState == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *pState = 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *milliwatts) {
    REQUIRE_DEVICE(device);
    if (milliwatts == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *milliwatts = device->gpu->power_draw_w * 1000u;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    REQUIRE_DEVICE(device);
    if (limit == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *limit = device->gpu->power_limit_w * 1000u;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    REQUIRE_DEVICE(device);
    if (utilization == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    utilization->gpu = 0;
    utilization->memory = 0;
    return NVML_SUCCESS;
}

/* nvmlComputeMode_t: NVML_COMPUTEMODE_DEFAULT */
EXPORT nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, int *mode) {
    REQUIRE_DEVICE(device);
    if (mode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *mode = 0;
    return NVML_SUCCESS;
}

/* No monitor is attached to a simulated GPU. */
EXPORT nvmlReturn_t nvmlDeviceGetDisplayActive(nvmlDevice_t device, nvmlEnableState_t *isActive) {
    REQUIRE_DEVICE(device);
    if (isActive == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *isActive = NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int errorType, int counterType,
                                                unsigned long long *eccCounts) {
    REQUIRE_DEVICE(device);
    (void)counterType;
    if (eccCounts == NULL || errorType < 0 || errorType > 1)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->ecc_errors < 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *eccCounts = (unsigned long long)device->gpu->ecc_errors;
    return NVML_SUCCESS;
}
