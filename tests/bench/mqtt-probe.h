/* MQTT for the benchmarks: a client that publishes without blocking, and
 * one that notes when a value comes back from the broker (the broker hop,
 * the baseline the freshness figures stand beside). */
#pragma once

#include <glib.h>
#include <mosquitto.h>

typedef struct {
    int expected;  /* the payload (an integer) waited for */
    gint64 t0;     /* when it was published, g_get_monotonic_time() */
    gint64 hop;    /* microseconds until it arrived; < 0 until then */
} Hop;

/* A client connected to 127.0.0.1:@port; with @hop, it fills @hop->hop
 * when a message carrying @hop->expected arrives. */
struct mosquitto *probe_client(guint port, const char *id, Hop *hop);
/* Runs libmosquitto's loop once without blocking. */
void probe_pump(struct mosquitto *m);
/* Publishes @payload (QoS 0) and writes it out before returning. */
void probe_publish(struct mosquitto *m, const char *topic, const char *payload);
void probe_free(struct mosquitto *m);

/* A publisher and a subscriber to @topic that fills @hop, both connected
 * to 127.0.0.1:@port, the subscription settled before it returns. */
void probe_pair(guint port, const char *topic, Hop *hop, struct mosquitto **pub, struct mosquitto **sub);
