/* The baseline for the D-Bus benchmark: GDBus alone emitting the signals
 * victron-dbus sends for the same updates, with nothing of ours in
 * between.  SERVICES private connections; on each, RATE times a second,
 * VALUES changed values: a PropertiesChanged {Value, Text} on each path,
 * then one ItemsChanged on "/" with all of them (the shapes of
 * shared/reference/victron-dbus.md 1.1).
 *
 *   baseline-dbus ADDRESS SERVICES VALUES RATE SECONDS
 *
 * Prints "signals N values N cpu-us N": CPU time of all its threads
 * (GDBus's worker included), measured as the benchmark measures the
 * daemon's. */
#include "wbt.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BUSITEM "com.victronenergy.BusItem"

typedef struct {
    GDBusConnection **conns;
    int services, values;
    guint64 tick, signals, sent;
} Emitter;

static GVariant *props(double value)
{
    g_autofree char *text = g_strdup_printf("%.1f W", value);
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "Value", g_variant_new_double(value));
    g_variant_builder_add(&b, "{sv}", "Text", g_variant_new_string(text));
    return g_variant_builder_end(&b);
}

static gboolean on_tick(gpointer user_data)
{
    Emitter *e = user_data;
    e->tick++;
    for (int s = 0; s < e->services; s++) {
        GVariantBuilder items;
        g_variant_builder_init(&items, G_VARIANT_TYPE("a{sa{sv}}"));
        for (int v = 0; v < e->values; v++) {
            double value = (double)(e->tick * 10 + (guint64)v);
            char path[32];
            g_snprintf(path, sizeof path, "/Value/%d", v);
            g_dbus_connection_emit_signal(e->conns[s], NULL, path, BUSITEM, "PropertiesChanged",
                                          g_variant_new("(@a{sv})", props(value)), NULL);
            g_variant_builder_add(&items, "{s@a{sv}}", path, props(value));
            e->signals++;
            e->sent++;
        }
        g_dbus_connection_emit_signal(e->conns[s], NULL, "/", BUSITEM, "ItemsChanged",
                                      g_variant_new("(@a{sa{sv}})", g_variant_builder_end(&items)), NULL);
        e->signals++;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_end(gpointer user_data)
{
    g_main_loop_quit(user_data);
    return G_SOURCE_REMOVE;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s ADDRESS SERVICES VALUES RATE SECONDS\n", argv[0]);
        return 2;
    }
    Emitter e = {.services = atoi(argv[2]), .values = atoi(argv[3])};
    double rate = g_ascii_strtod(argv[4], NULL), seconds = g_ascii_strtod(argv[5], NULL);
    e.conns = g_new0(GDBusConnection *, e.services);
    for (int s = 0; s < e.services; s++) {
        GError *error = NULL;
        e.conns[s] = g_dbus_connection_new_for_address_sync(
            argv[1], G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
            NULL, NULL, &error);
        if (!e.conns[s]) {
            fprintf(stderr, "%s\n", error->message);
            return 1;
        }
    }
    double c0 = wbt_cpu_us(getpid());
    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    g_timeout_add((guint)(1000 / rate), on_tick, &e);
    g_timeout_add((guint)(seconds * 1000), on_end, loop);
    g_main_loop_run(loop);
    for (int s = 0; s < e.services; s++)
        g_dbus_connection_flush_sync(e.conns[s], NULL, NULL);
    double us = wbt_cpu_us(getpid()) - c0;
    printf("signals %" G_GUINT64_FORMAT " values %" G_GUINT64_FORMAT " cpu-us %.0f\n", e.signals, e.sent, us);
    for (int s = 0; s < e.services; s++)
        g_object_unref(e.conns[s]);
    g_free(e.conns);
    g_main_loop_unref(loop);
    return 0;
}
