/* mqtt-probe: see mqtt-probe.h. */
#include "mqtt-probe.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

static void on_message(struct mosquitto *m, void *user_data, const struct mosquitto_message *msg)
{
    Hop *h = user_data;
    g_autofree char *text = g_strndup(msg->payload, (gsize)msg->payloadlen);
    if (atoi(text) == h->expected && h->hop < 0)
        h->hop = g_get_monotonic_time() - h->t0;
}

struct mosquitto *probe_client(guint port, const char *id, Hop *hop)
{
    struct mosquitto *m = mosquitto_new(id, true, hop);
    if (hop)
        mosquitto_message_callback_set(m, on_message);
    if (mosquitto_connect(m, "127.0.0.1", (int)port, 60) != MOSQ_ERR_SUCCESS)
        g_error("mosquitto_connect failed");
    return m;
}

void probe_pump(struct mosquitto *m)
{
    struct pollfd p = {.fd = mosquitto_socket(m), .events = POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)};
    if (poll(&p, 1, 0) > 0) {
        if (p.revents & POLLIN)
            mosquitto_loop_read(m, 1);
        if (p.revents & POLLOUT)
            mosquitto_loop_write(m, 1);
    }
    mosquitto_loop_misc(m);
}

void probe_publish(struct mosquitto *m, const char *topic, const char *payload)
{
    mosquitto_publish(m, NULL, topic, (int)strlen(payload), payload, 0, false);
    while (mosquitto_want_write(m))
        mosquitto_loop_write(m, 1);
}

void probe_pair(guint port, const char *topic, Hop *hop, struct mosquitto **pub, struct mosquitto **sub)
{
    *pub = probe_client(port, "bench-pub", NULL);
    *sub = probe_client(port, "bench-sub", hop);
    mosquitto_subscribe(*sub, NULL, topic, 0);
    for (int i = 0; i < 50; i++) {
        probe_pump(*sub);
        g_usleep(2000);
    }
}

void probe_free(struct mosquitto *m)
{
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
}
