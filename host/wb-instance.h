/* Instance internals shared by wb-instance.c and wb-daemon.c. */
#pragma once

#include "wb-private.h"

struct _WbInstance {
    gint ref;
    WbDaemon *daemon;
    WbPlugin *plugin;     /* NULL for the host's own pseudo-instance */
    char *name;
    WbConfig *config;
    gpointer state;       /* the plugin's, from create() */
    gboolean created;
    gboolean started;
    gint running;         /* atomic: set while started and not stopping */
    char *state_dir;
    char *fingerprint;    /* its conf.d section, to tell a changed one on reload */
    GList *cleanups;      /* Cleanup*, newest first */
};

WbInstance *wb_instance_new(WbDaemon *daemon, WbPlugin *plugin, const char *name, WbConfig *config);
WbInstance *wb_instance_ref(WbInstance *inst);
void wb_instance_set_running(WbInstance *inst, gboolean running);

const char *wb_daemon_get_state_dir(WbDaemon *daemon);
const char *const *wb_daemon_get_data_dirs(WbDaemon *daemon);
