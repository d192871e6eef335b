/* The CPU benchmark's baseline: libmodbus's own master loop,
 * modbus_read_registers() back to back on a serial line for a while, as
 * plain as a Modbus master gets.
 *
 *   baseline-client DEVICE UNIT ADDRESS COUNT SECONDS [INTERVAL-MS]   (9600 8N1)
 *
 * With INTERVAL-MS, one read every INTERVAL-MS (sleeping between) instead
 * of back to back.
 * Prints "requests N errors N cpu-us N" (user + system time of this
 * process). */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s DEVICE UNIT ADDRESS COUNT SECONDS [INTERVAL-MS]\n", argv[0]);
        return 2;
    }
    modbus_t *ctx = modbus_new_rtu(argv[1], 9600, 'N', 8, 1);
    modbus_set_slave(ctx, atoi(argv[2]));
    modbus_set_response_timeout(ctx, 0, 500000);
    if (modbus_connect(ctx) == -1) {
        fprintf(stderr, "%s: %s\n", argv[1], modbus_strerror(errno));
        return 1;
    }
    int address = (int)strtol(argv[3], NULL, 0), count = atoi(argv[4]);
    double end = now() + atof(argv[5]);
    double interval = argc == 7 ? atof(argv[6]) / 1000.0 : 0, next = now();
    uint16_t regs[125];
    long requests = 0, errors = 0;
    while (now() < end) {
        if (interval > 0) {
            next += interval;
            double wait = next - now();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        requests++;
        if (modbus_read_registers(ctx, address, count, regs) != count) {
            errors++;
            modbus_flush(ctx);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    printf("requests %ld errors %ld cpu-us %ld\n", requests, errors, cpu);
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
