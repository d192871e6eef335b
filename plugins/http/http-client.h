/* http-client: what the HTTP source plugins (opendtu, shelly) share: one
 * libsoup session per instance, requests with a timeout of their own, the
 * answer parsed as JSON, and wattbridge's failure rules: every failure
 * is logged once with its reason (again only when the reason changes), the
 * device is marked disconnected, polling backs off, and recovery is logged
 * and automatic.
 *
 * Everything runs on the host's main context; nothing blocks it, except
 * http_client_post_form_sync(), which only a plugin's stop() may call: it
 * blocks until a deadline (the main loop may still be running for the
 * other instances, during a reload). */
#pragma once

#include <wattbridge/plugin.h>

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

/* The options every HTTP plugin declares, in its WbOptionSpec table. */
#define HTTP_CLIENT_OPTIONS                                                                                       \
    {.name = "url", .type = WB_OPTION_STRING, .flags = WB_OPTION_REQUIRED,                                        \
     .help = "The device's address, e.g. http://192.168.1.50 (a port or path prefix may follow)"},                 \
        {.name = "poll-interval", .type = WB_OPTION_DURATION, .default_value = "5s", .min = 0.05, .max = 3600,    \
         .unit = "s", .help = "How often the device is read while it answers"},                                   \
        {.name = "timeout", .type = WB_OPTION_DURATION, .default_value = "5s", .min = 0.05, .max = 600,           \
         .unit = "s", .help = "How long a request may take before it counts as failed"},                          \
        {.name = "backoff-max", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 0.05, .max = 86400,    \
         .unit = "s",                                                                                             \
         .help = "After failures the poll interval doubles up to this (a 429's Retry-After can ask for longer)"}

typedef struct HttpClient HttpClient;

struct HttpClient {
    WbInstance *inst;
    SoupSession *session;
    char *base;            /* the url option without a trailing '/' */
    char *user, *password; /* Basic authentication, sent with every request */
    gint64 timeout;        /* us */
    gint64 interval;       /* us */
    gint64 backoff_max;    /* us */
    gint64 delay;          /* us: the wait before the next poll */
    char *failure;         /* the reason last logged; NULL while the device answers */
    guint failures;        /* in a row */
    int connected;         /* -1 unknown, 0, 1: as last published */
    GPtrArray *requests;   /* HttpRequest*: in flight */
    /* the poll cycle */
    WbTimer *poll_timer;
    void (*poll)(HttpClient *client, gpointer user_data);
    gpointer poll_data;
    gboolean cycle_failed;
    gint64 cycle_start;    /* monotonic */
    /* the answer being delivered: valid inside an HttpDoneFunc */
    gint64 sent_at, answered_at; /* g_get_real_time() */
};

/* A request's outcome: @root is the parsed JSON body (NULL on failure);
 * @error says why it failed (transport, status, or body), not logged yet:
 * pass it to http_client_cycle_failed(), or log it. */
typedef void (*HttpDoneFunc)(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error,
                             gpointer user_data);

gboolean http_client_init(HttpClient *client, WbInstance *instance, const WbConfig *config, GError **error);
void http_client_set_basic_auth(HttpClient *client, const char *user, const char *password);
/* Stops polling and cancels what is in flight: its callbacks never run. */
void http_client_cancel(HttpClient *client);
/* Cancels, then frees; may be called again. */
void http_client_clear(HttpClient *client);

/* Gives @msg (a message to the device, e.g. a websocket handshake) the
 * client's credentials; returns @msg. */
SoupMessage *http_client_prepare(HttpClient *client, SoupMessage *msg);

/* GET @path_and_query (relative to the url); @done runs on the main
 * context once, unless the client is cleared first.  @headers: extra
 * request headers "Name", "value", ..., NULL-terminated, or NULL. */
void http_client_get(HttpClient *client, const char *path_and_query, const char *const *headers, HttpDoneFunc done,
                     gpointer user_data);
/* The same; @destroy (nullable) frees @user_data after @done ran, or
 * when the request is cancelled without it. */
void http_client_get_full(HttpClient *client, const char *path_and_query, const char *const *headers,
                          HttpDoneFunc done, gpointer user_data, GDestroyNotify destroy);
/* POST an application/x-www-form-urlencoded form with one field. */
void http_client_post_form(HttpClient *client, const char *path, const char *field, const char *value,
                           HttpDoneFunc done, gpointer user_data);
/* The same, blocking until @deadline (g_get_monotonic_time()) at the
 * most, on a session of its own: for stop() only.  Returns the parsed
 * answer or NULL with @error. */
JsonNode *http_client_post_form_sync(HttpClient *client, const char *path, const char *field, const char *value,
                                     gint64 deadline, GError **error);

/* The poll cycle: @poll runs now and then every poll-interval (from the
 * start of one cycle to the next), or after the back-off delay when a
 * cycle failed.  A cycle is one or more requests; it ends with
 * http_client_cycle_end(), after http_client_cycle_failed() if it failed. */
void http_client_start_polling(HttpClient *client, void (*poll)(HttpClient *client, gpointer user_data),
                               gpointer user_data);
/* A request of the cycle failed: log @reason once (at WARNING, again when
 * it changes), publish connected = 0, and lengthen the delay: doubled up
 * to backoff-max, or a 429's Retry-After when that is longer.  The cycle
 * still has to end. */
void http_client_cycle_failed(HttpClient *client, SoupMessage *msg, const char *reason);
/* Ends the cycle: after a cycle without failure the recovery is logged,
 * connected = 1 published and the delay reset to the poll interval;
 * schedules the next.  Returns whether it succeeded. */
gboolean http_client_cycle_end(HttpClient *client);

/* Error domain of the failures a request reports. */
#define HTTP_CLIENT_ERROR (http_client_error_quark())
GQuark http_client_error_quark(void);
enum {
    HTTP_CLIENT_ERROR_STATUS,  /* a non-2xx answer; 429 carries the Retry-After in the message's headers */
    HTTP_CLIENT_ERROR_BODY,    /* not JSON, or truncated */
    HTTP_CLIENT_ERROR_TIMEOUT, /* no answer within the timeout */
};

/* HTTP 429 Too Many Requests (RFC 6585), which libsoup 3.2 does not name. */
#define HTTP_STATUS_TOO_MANY_REQUESTS 429

/* Retry-After of a 429 answer in us (seconds or an HTTP date), or 0. */
gint64 http_client_retry_after(SoupMessage *msg);

/* JSON helpers: a member of an object node, NULL when absent or not an
 * object or not of the type asked for. */
JsonObject *json_member_object(JsonObject *o, const char *name);
JsonArray *json_member_array(JsonObject *o, const char *name);
/* @node's object, NULL when @node is NULL or not an object */
JsonObject *json_node_object(JsonNode *node);
gboolean json_member_number(JsonObject *o, const char *name, double *value);
const char *json_member_string(JsonObject *o, const char *name);
/* a boolean member; -1 when absent or not a boolean */
int json_member_bool(JsonObject *o, const char *name);
