/*
 * A simulated nvidia-smi for gpudoctor's tests (built by tests/kit, never shipped).
 *
 * Like the real tool it links against nothing but glibc (and libdl where glibc still splits it out) and
 * loads NVML at run time with dlopen("libnvidia-ml.so.1"), so it works, or fails, exactly where the real
 * one would: in a container it sees whatever library and device nodes the runtime injected.
 *
 * Supported: -L/--list-gpus, --query-gpu=<fields> --format=csv[,noheader][,nounits], --version, -h, and the
 * default summary table. Output and error texts follow the real tool (the 550-570 driver branches; the
 * summary's separator line and process header follow the branch in KIT_SMI_VERSION for 570 and 580).
 * Errors are printed on stdout, as the real tool does, and the exit status is the NVML error code.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef KIT_SMI_VERSION
#error "KIT_SMI_VERSION must be defined (the driver version this nvidia-smi ships with)"
#endif

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_LIBRARY_NOT_FOUND = 12,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
};

#define MIB (1024ULL * 1024ULL)
#define EXIT_INVALID_ARGUMENT 2
#define EXIT_NOT_FOUND 6

static struct {
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*shutdown)(void);
    const char *(*error_string)(nvmlReturn_t);
    nvmlReturn_t (*driver_version)(char *, unsigned int);
    nvmlReturn_t (*nvml_version)(char *, unsigned int);
    nvmlReturn_t (*cuda_version)(int *);
    nvmlReturn_t (*count)(unsigned int *);
    nvmlReturn_t (*handle_by_index)(unsigned int, nvmlDevice_t *);
    nvmlReturn_t (*name)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*uuid)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*pci_info)(nvmlDevice_t, nvmlPciInfo_t *);
    nvmlReturn_t (*memory_info)(nvmlDevice_t, nvmlMemory_t *);
    nvmlReturn_t (*persistence_mode)(nvmlDevice_t, int *);
    nvmlReturn_t (*mig_mode)(nvmlDevice_t, unsigned int *, unsigned int *);
    /* Sensors: optional, a missing entry point or an error is shown as N/A like an unsupported field. */
    nvmlReturn_t (*fan_speed)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int *);
    nvmlReturn_t (*performance_state)(nvmlDevice_t, int *);
    nvmlReturn_t (*power_usage)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t *);
    nvmlReturn_t (*compute_mode)(nvmlDevice_t, int *);
    nvmlReturn_t (*display_active)(nvmlDevice_t, int *);
    nvmlReturn_t (*total_ecc_errors)(nvmlDevice_t, int, int, unsigned long long *);
} nv;

static int exit_code(nvmlReturn_t rc) { return (rc > 0 && rc < 255) ? rc : 255; }

static void load_nvml(void) {
    /* The real tool resolves the soname through the loader's search path (ld.so.cache), never a path. */
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (lib == NULL) {
        printf("NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the "
               "NVIDIA Display Driver is properly installed and present in your system.\n"
               "Please also try adding directory that contains libnvidia-ml.so to your system PATH.\n");
        exit(NVML_ERROR_LIBRARY_NOT_FOUND);
    }
    struct {
        void **slot;
        const char *symbol;
        int required;
    } table[] = {
        {(void **)&nv.init, "nvmlInit_v2", 1},
        {(void **)&nv.shutdown, "nvmlShutdown", 1},
        {(void **)&nv.error_string, "nvmlErrorString", 1},
        {(void **)&nv.driver_version, "nvmlSystemGetDriverVersion", 1},
        {(void **)&nv.nvml_version, "nvmlSystemGetNVMLVersion", 1},
        {(void **)&nv.cuda_version, "nvmlSystemGetCudaDriverVersion", 1},
        {(void **)&nv.count, "nvmlDeviceGetCount_v2", 1},
        {(void **)&nv.handle_by_index, "nvmlDeviceGetHandleByIndex_v2", 1},
        {(void **)&nv.name, "nvmlDeviceGetName", 1},
        {(void **)&nv.uuid, "nvmlDeviceGetUUID", 1},
        {(void **)&nv.pci_info, "nvmlDeviceGetPciInfo_v3", 1},
        {(void **)&nv.memory_info, "nvmlDeviceGetMemoryInfo", 1},
        {(void **)&nv.persistence_mode, "nvmlDeviceGetPersistenceMode", 1},
        {(void **)&nv.mig_mode, "nvmlDeviceGetMigMode", 0},
        {(void **)&nv.fan_speed, "nvmlDeviceGetFanSpeed", 0},
        {(void **)&nv.temperature, "nvmlDeviceGetTemperature", 0},
        {(void **)&nv.performance_state, "nvmlDeviceGetPerformanceState", 0},
        {(void **)&nv.power_usage, "nvmlDeviceGetPowerUsage", 0},
        {(void **)&nv.power_limit, "nvmlDeviceGetEnforcedPowerLimit", 0},
        {(void **)&nv.utilization, "nvmlDeviceGetUtilizationRates", 0},
        {(void **)&nv.compute_mode, "nvmlDeviceGetComputeMode", 0},
        {(void **)&nv.display_active, "nvmlDeviceGetDisplayActive", 0},
        {(void **)&nv.total_ecc_errors, "nvmlDeviceGetTotalEccErrors", 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        *table[i].slot = dlsym(lib, table[i].symbol);
        if (*table[i].slot == NULL && table[i].required) {
            printf("Failed to initialize NVML: Function Not Found\n");
            exit(NVML_ERROR_FUNCTION_NOT_FOUND);
        }
    }
}

/* "12.550.54.14" (CUDA major . driver version) -> "550.54", as the tool prints the NVML library version. */
static void nvml_short_version(char *out, size_t size) {
    char full[96];
    if (nv.nvml_version(full, sizeof full) != NVML_SUCCESS) {
        snprintf(out, size, "N/A");
        return;
    }
    char *p = strchr(full, '.');
    char *start = p ? p + 1 : full;
    char *dot = strchr(start, '.');
    char *end = dot ? strchr(dot + 1, '.') : NULL;
    if (end)
        *end = '\0';
    snprintf(out, size, "%s", start);
}

static int driver_major(const char *version) { return atoi(version); }

static void init_or_exit(void) {
    nvmlReturn_t rc = nv.init();
    if (rc == NVML_SUCCESS)
        return;
    if (rc == NVML_ERROR_DRIVER_NOT_LOADED) {
        printf("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
               "the latest NVIDIA driver is installed and running.\n\n");
    } else if (rc == NVML_ERROR_LIB_RM_VERSION_MISMATCH) {
        printf("Failed to initialize NVML: Driver/library version mismatch\n");
        /* 550 and newer name the library's version under the error. */
        if (driver_major(KIT_SMI_VERSION) >= 550) {
            char version[96];
            nvml_short_version(version, sizeof version);
            printf("NVML library version: %s\n", version);
        }
    } else {
        printf("Failed to initialize NVML: %s\n", nv.error_string(rc));
    }
    exit(exit_code(rc));
}

/* Handles of the GPUs the library hands out; a GPU it refuses is reported and left out. */
static unsigned int gpu_count;
static nvmlDevice_t gpus[64];
static unsigned int gpu_index[64]; /* NVML's index of each handle */
static nvmlReturn_t handle_error;

static void open_gpus(void) {
    unsigned int count = 0;
    nvmlReturn_t rc = nv.count(&count);
    if (rc != NVML_SUCCESS) {
        printf("Failed to initialize NVML: %s\n", nv.error_string(rc));
        exit(exit_code(rc));
    }
    if (count == 0) {
        printf("No devices were found\n");
        exit(EXIT_NOT_FOUND);
    }
    for (unsigned int i = 0; i < count && gpu_count < 64; i++) {
        nvmlDevice_t dev;
        rc = nv.handle_by_index(i, &dev);
        if (rc != NVML_SUCCESS) {
            printf("Unable to determine the device handle for GPU%u: %s\n", i, nv.error_string(rc));
            handle_error = rc;
            continue;
        }
        gpu_index[gpu_count] = i;
        gpus[gpu_count++] = dev;
    }
}

static int finish(void) {
    nv.shutdown();
    return handle_error ? exit_code(handle_error) : 0;
}

static void text(nvmlReturn_t (*fn)(nvmlDevice_t, char *, unsigned int), nvmlDevice_t dev, char *out, size_t n) {
    if (fn(dev, out, (unsigned int)n) != NVML_SUCCESS)
        snprintf(out, n, "N/A");
}

static void bus_id(nvmlDevice_t dev, char *out, size_t n) {
    nvmlPciInfo_t pci;
    if (nv.pci_info(dev, &pci) != NVML_SUCCESS)
        snprintf(out, n, "N/A");
    else
        snprintf(out, n, "%s", pci.busId);
}

static int list_gpus(void) {
    open_gpus();
    for (unsigned int i = 0; i < gpu_count; i++) {
        char name[96], uuid[96];
        text(nv.name, gpus[i], name, sizeof name);
        text(nv.uuid, gpus[i], uuid, sizeof uuid);
        printf("GPU %u: %s (UUID: %s)\n", gpu_index[i], name, uuid);
    }
    return finish();
}

static int version(void) {
    char driver[96] = "N/A", nvml[96];
    int cuda = 0;
    init_or_exit();
    nvml_short_version(nvml, sizeof nvml);
    nv.driver_version(driver, sizeof driver);
    printf("NVIDIA-SMI version  : %s\n", KIT_SMI_VERSION);
    printf("NVML version        : %s\n", nvml);
    printf("DRIVER version      : %s\n", driver);
    if (nv.cuda_version(&cuda) == NVML_SUCCESS)
        printf("CUDA Version        : %d.%d\n", cuda / 1000, (cuda % 1000) / 10);
    else
        printf("CUDA Version        : N/A\n");
    nv.shutdown();
    return 0;
}

/* --- --query-gpu ----------------------------------------------------------------------------------- */

enum field { F_INDEX, F_UUID, F_NAME, F_DRIVER, F_MEMORY_TOTAL, F_BUS_ID, F_COUNT, F_PERSISTENCE, F_MIG };

static const struct {
    const char *query; /* what the user may write */
    enum field field;
    const char *header; /* what the header line shows */
} fields[] = {
    {"index", F_INDEX, "index"},
    {"uuid", F_UUID, "uuid"},
    {"gpu_uuid", F_UUID, "uuid"},
    {"name", F_NAME, "name"},
    {"gpu_name", F_NAME, "name"},
    {"driver_version", F_DRIVER, "driver_version"},
    {"memory.total", F_MEMORY_TOTAL, "memory.total [MiB]"},
    {"pci.bus_id", F_BUS_ID, "pci.bus_id"},
    {"gpu_bus_id", F_BUS_ID, "pci.bus_id"},
    {"count", F_COUNT, "count"},
    {"persistence_mode", F_PERSISTENCE, "persistence_mode"},
    {"mig.mode.current", F_MIG, "mig.mode.current"},
};
#define FIELD_KINDS (sizeof fields / sizeof fields[0])

static int invalid_arguments(void) {
    printf("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n");
    return EXIT_INVALID_ARGUMENT;
}

static void field_value(enum field f, unsigned int i, int units, char *out, size_t n) {
    nvmlDevice_t dev = gpus[i];
    nvmlMemory_t mem;
    int state;
    unsigned int current, pending;
    switch (f) {
    case F_INDEX: snprintf(out, n, "%u", gpu_index[i]); break;
    case F_UUID: text(nv.uuid, dev, out, n); break;
    case F_NAME: text(nv.name, dev, out, n); break;
    case F_DRIVER:
        if (nv.driver_version(out, (unsigned int)n) != NVML_SUCCESS)
            snprintf(out, n, "[N/A]");
        break;
    case F_MEMORY_TOTAL:
        if (nv.memory_info(dev, &mem) != NVML_SUCCESS)
            snprintf(out, n, "[N/A]");
        else
            snprintf(out, n, units ? "%llu MiB" : "%llu", mem.total / MIB);
        break;
    case F_BUS_ID: bus_id(dev, out, n); break;
    case F_COUNT: snprintf(out, n, "%u", gpu_count); break;
    case F_PERSISTENCE:
        if (nv.persistence_mode(dev, &state) != NVML_SUCCESS)
            snprintf(out, n, "[N/A]");
        else
            snprintf(out, n, "%s", state ? "Enabled" : "Disabled");
        break;
    case F_MIG:
        if (nv.mig_mode == NULL || nv.mig_mode(dev, &current, &pending) != NVML_SUCCESS)
            snprintf(out, n, "[N/A]");
        else
            snprintf(out, n, "%s", current ? "Enabled" : "Disabled");
        break;
    }
}

static int query_gpu(const char *query, const char *format) {
    if (format == NULL)
        return invalid_arguments();
    /* --format=csv[,noheader][,nounits] */
    int header = 1, units = 1;
    char fmt[256];
    snprintf(fmt, sizeof fmt, "%s", format);
    char *save = NULL;
    char *tok = strtok_r(fmt, ",", &save);
    if (tok == NULL || strcmp(tok, "csv") != 0)
        return invalid_arguments();
    while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
        if (strcmp(tok, "noheader") == 0)
            header = 0;
        else if (strcmp(tok, "nounits") == 0)
            units = 0;
        else
            return invalid_arguments();
    }

    enum field wanted[64];
    const char *headers[64];
    int nwanted = 0;
    char list[1024];
    snprintf(list, sizeof list, "%s", query);
    for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t k;
        for (k = 0; k < FIELD_KINDS; k++)
            if (strcmp(tok, fields[k].query) == 0)
                break;
        if (k == FIELD_KINDS) {
            printf("Field \"%s\" is not a valid field to query.\n\n", tok);
            return EXIT_INVALID_ARGUMENT;
        }
        if (nwanted < 64) {
            wanted[nwanted] = fields[k].field;
            headers[nwanted] = fields[k].header;
            nwanted++;
        }
    }
    if (nwanted == 0)
        return invalid_arguments();

    init_or_exit();
    open_gpus();
    if (header) {
        for (int k = 0; k < nwanted; k++)
            printf("%s%s", k ? ", " : "", headers[k]);
        printf("\n");
    }
    for (unsigned int i = 0; i < gpu_count; i++) {
        for (int k = 0; k < nwanted; k++) {
            char value[128];
            field_value(wanted[k], i, units, value, sizeof value);
            printf("%s%s", k ? ", " : "", value);
        }
        printf("\n");
    }
    return finish();
}

/* --- the summary table ------------------------------------------------------------------------------ */

static const char *RULE = "+-----------------------------------------------------------------------------------------+";

static void na_or(char *out, size_t n, int width, nvmlReturn_t rc, const char *fmt, unsigned long long v) {
    char tmp[64];
    if (rc == NVML_SUCCESS)
        snprintf(tmp, sizeof tmp, fmt, v);
    else
        snprintf(tmp, sizeof tmp, "N/A");
    snprintf(out, n, "%*s", width, tmp);
}

static void gpu_block(unsigned int i) {
    nvmlDevice_t dev = gpus[i];
    /* Each cell is at most as wide as its column; 64 bytes leaves room for any value. */
    char name[96], bus[64], persistence[8], disp[8], ecc[64], fan[64], temp[64], perf[64], power[64], cap[64],
        util[64], compute[64], mig[16];
    nvmlReturn_t rc;
    unsigned int u = 0, cur = 0, pend = 0;
    int state = 0;
    unsigned long long errors = 0;
    nvmlMemory_t mem = {0, 0, 0};

    text(nv.name, dev, name, sizeof name);
    if (strlen(name) > 30)
        memcpy(name + 27, "...", 4);
    bus_id(dev, bus, sizeof bus);
    rc = nv.persistence_mode(dev, &state);
    snprintf(persistence, sizeof persistence, "%s", rc ? "N/A" : (state ? "On" : "Off"));
    rc = nv.display_active ? nv.display_active(dev, &state) : NVML_ERROR_FUNCTION_NOT_FOUND;
    snprintf(disp, sizeof disp, "%s", rc ? "N/A" : (state ? "On" : "Off"));
    /* NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1, NVML_VOLATILE_ECC = 0 */
    rc = nv.total_ecc_errors ? nv.total_ecc_errors(dev, 1, 0, &errors) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(ecc, sizeof ecc, 21, rc, "%llu", errors);

    rc = nv.fan_speed ? nv.fan_speed(dev, &u) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(fan, sizeof fan, 4, rc, "%llu%%", u);
    /* NVML_TEMPERATURE_GPU = 0 */
    rc = nv.temperature ? nv.temperature(dev, 0, &u) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(temp, sizeof temp, 6, rc, "%lluC", u);
    rc = nv.performance_state ? nv.performance_state(dev, &state) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(perf, sizeof perf, 6, rc, "P%llu", (unsigned long long)state);
    rc = nv.power_usage ? nv.power_usage(dev, &u) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(power, sizeof power, 16, rc, "%lluW", u / 1000);
    rc = nv.power_limit ? nv.power_limit(dev, &u) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(cap, sizeof cap, 5, rc, "%lluW", u / 1000);
    nvmlUtilization_t utilization = {0, 0};
    rc = nv.utilization ? nv.utilization(dev, &utilization) : NVML_ERROR_FUNCTION_NOT_FOUND;
    na_or(util, sizeof util, 8, rc, "%llu%%", utilization.gpu);
    rc = nv.compute_mode ? nv.compute_mode(dev, &state) : NVML_ERROR_FUNCTION_NOT_FOUND;
    {
        /* nvmlComputeMode_t: 0 DEFAULT, 1 EXCLUSIVE_THREAD (gone), 2 PROHIBITED, 3 EXCLUSIVE_PROCESS */
        const char *mode = rc ? "N/A" : state == 0 ? "Default" : state == 2 ? "Prohibited" : "E. Process";
        snprintf(compute, sizeof compute, "%13s", mode);
    }
    rc = nv.mig_mode ? nv.mig_mode(dev, &cur, &pend) : NVML_ERROR_FUNCTION_NOT_FOUND;
    snprintf(mig, sizeof mig, "%s", rc ? "N/A" : (cur ? "Enabled" : "Disabled"));
    nvmlReturn_t mrc = nv.memory_info(dev, &mem);

    printf("| %3u  %-31s%-3s |%19s %3s |%s |\n", gpu_index[i], name, persistence, bus, disp, ecc);
    if (mrc == NVML_SUCCESS)
        printf("|%s%s%s%s / %s |%8lluMiB / %6lluMiB |%s%s |\n", fan, temp, perf, power, cap, mem.used / MIB,
               mem.total / MIB, util, compute);
    else
        printf("|%s%s%s%s / %s |%23s |%s%s |\n", fan, temp, perf, power, cap, "N/A", util, compute);
    printf("|                                         |                        |%21s |\n", mig);
}

static int summary(void) {
    init_or_exit();
    open_gpus();
    char driver[96] = "N/A", cuda_text[16] = "N/A";
    int cuda = 0;
    nv.driver_version(driver, sizeof driver);
    if (nv.cuda_version(&cuda) == NVML_SUCCESS)
        snprintf(cuda_text, sizeof cuda_text, "%d.%d", cuda / 1000, (cuda % 1000) / 10);

    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", localtime(&now));
    int major = driver_major(KIT_SMI_VERSION);
    /* The rule under the version line starts with '|' up to 570 and with '+' from 580 on. */
    const char edge = major >= 580 ? '+' : '|';
    const char *row_rule = "+-----------------------------------------+------------------------+----------------------+";

    printf("%s       \n", date);
    printf("%s\n", RULE);
    printf("| NVIDIA-SMI %-23sDriver Version: %-15sCUDA Version: %-9s|\n", KIT_SMI_VERSION, driver, cuda_text);
    printf("%c-----------------------------------------+------------------------+----------------------+\n", edge);
    printf("| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n");
    printf("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |\n");
    printf("|                                         |                        |               MIG M. |\n");
    printf("|=========================================+========================+======================|\n");
    for (unsigned int i = 0; i < gpu_count; i++) {
        gpu_block(i);
        printf("%s\n", row_rule);
    }
    printf("%89s\n", "");
    printf("%s\n", RULE);
    printf("| Processes:                                                                              |\n");
    if (major >= 570)
        printf("|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |\n");
    else
        printf("|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |\n");
    printf("|        ID   ID                                                               Usage      |\n");
    printf("|=========================================================================================|\n");
    printf("|  No running processes found                                                             |\n");
    printf("%s\n", RULE);
    return finish();
}

static void usage(void) {
    printf("NVIDIA System Management Interface -- v%s\n\n", KIT_SMI_VERSION);
    printf("(simulated by the gpudoctor test kit)\n\n");
    printf("    -L,   --list-gpus           Display a list of GPUs connected to the system.\n");
    printf("    --query-gpu=                Information about GPU.\n");
    printf("    --format=                   csv, noheader, nounits.\n");
    printf("    --version                   Print version information.\n");
}

/* Takes "--opt=value" or "--opt value"; returns the value or NULL when `arg` is not `opt`. */
static const char *option_value(const char *opt, int argc, char **argv, int *i) {
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

int main(int argc, char **argv) {
    enum { SUMMARY, LIST, VERSION, QUERY, HELP } mode = SUMMARY;
    const char *query = NULL, *format = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "-L") == 0 || strcmp(argv[i], "--list-gpus") == 0)
            mode = LIST;
        else if (strcmp(argv[i], "--version") == 0)
            mode = VERSION;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            mode = HELP;
        else if ((v = option_value("--query-gpu", argc, argv, &i)) != NULL) {
            mode = QUERY;
            query = v;
        } else if ((v = option_value("--format", argc, argv, &i)) != NULL)
            format = v;
        else
            return invalid_arguments();
    }
    if (mode == HELP) {
        usage();
        return 0;
    }
    if (format != NULL && mode != QUERY)
        return invalid_arguments();
    load_nvml();
    switch (mode) {
    case LIST: init_or_exit(); return list_gpus();
    case VERSION: return version();
    case QUERY: return query_gpu(query, format);
    default: return summary();
    }
}
