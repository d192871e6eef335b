/* The benchmark's baseline: libmodbus's own server loop, as in its
 * bandwidth-server-one test: modbus_receive() -> modbus_reply() on a static
 * mapping, no locks, no checks, one client at a time.
 *
 *   baseline-server tcp PORT       (127.0.0.1)
 *   baseline-server rtu DEVICE     (9600 8N1, unit 1)
 *
 * Holding registers 0x2000-0x2051 hold the DTSU666 measurement block's
 * size of data.  Runs until SIGTERM. */
#include <errno.h>
#include <modbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s tcp PORT | rtu DEVICE\n", argv[0]);
        return 2;
    }
    modbus_mapping_t *map = modbus_mapping_new_start_address(0, 0, 0, 0, 0x2000, 0x52, 0, 0);
    for (int i = 0; i < 0x52; i++)
        map->tab_registers[i] = (uint16_t)(0x4500 + i);
    uint8_t req[MODBUS_MAX_ADU_LENGTH];

    if (strcmp(argv[1], "tcp") == 0) {
        modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[2]));
        int listener = modbus_tcp_listen(ctx, 1);
        if (listener < 0) {
            fprintf(stderr, "listen: %s\n", modbus_strerror(errno));
            return 1;
        }
        fprintf(stderr, "ready\n");
        for (;;) {
            if (modbus_tcp_accept(ctx, &listener) < 0)
                continue;
            for (;;) {
                int rc = modbus_receive(ctx, req);
                if (rc > 0)
                    modbus_reply(ctx, req, rc, map);
                else if (rc < 0)
                    break;
            }
            close(modbus_get_socket(ctx));
        }
    }
    modbus_t *ctx = modbus_new_rtu(argv[2], 9600, 'N', 8, 1);
    modbus_set_slave(ctx, 1);
    if (modbus_connect(ctx) < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], modbus_strerror(errno));
        return 1;
    }
    fprintf(stderr, "ready\n");
    for (;;) {
        int rc = modbus_receive(ctx, req);
        if (rc > 0)
            modbus_reply(ctx, req, rc, map);
        else if (rc < 0 && errno != ETIMEDOUT)
            modbus_flush(ctx);
    }
}
