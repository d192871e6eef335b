/* Unit tests: the point store (names, wildcards, batches, states, staleness). */
#include "wb-private.h"

#include <math.h>

typedef struct {
    WbDaemon *daemon;
    WbInstance *pv;
    WbInstance *sink;
} Fixture;

typedef struct {
    GPtrArray *events; /* "name=value/state" strings, "END" for a batch end */
} Recorder;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    WbDaemonSettings settings = {0};
    f->daemon = wb_daemon_new(&settings);
    f->pv = wb_instance_new_internal(f->daemon, "pv");
    f->sink = wb_instance_new_internal(f->daemon, "sink");
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    wb_instance_run_cleanups(f->sink);
    wb_instance_run_cleanups(f->pv);
    wb_instance_unref(f->sink);
    wb_instance_unref(f->pv);
    wb_daemon_free(f->daemon);
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

static const char *state_name(WbPointState s)
{
    return s == WB_POINT_VALID ? "valid" : s == WB_POINT_INVALID ? "invalid" : "stale";
}

static void on_point(const WbPoint *p, WbPointState state, gpointer user_data)
{
    Recorder *r = user_data;
    if (wb_point_is_string(p))
        g_ptr_array_add(r->events, g_strdup_printf("%s=%s/%s", wb_point_get_name(p), wb_point_get_string(p),
                                                   state_name(state)));
    else
        g_ptr_array_add(r->events, g_strdup_printf("%s=%g/%s", wb_point_get_name(p), wb_point_get_double(p),
                                                   state_name(state)));
}

static void on_end(gpointer user_data)
{
    Recorder *r = user_data;
    g_ptr_array_add(r->events, g_strdup("END"));
}

static char *joined(Recorder *r)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < r->events->len; i++)
        g_string_append_printf(s, "%s%s", i ? " " : "", (char *)g_ptr_array_index(r->events, i));
    g_ptr_array_set_size(r->events, 0);
    return g_string_free(s, FALSE);
}

static Recorder *recorder_new(void)
{
    Recorder *r = g_new0(Recorder, 1);
    r->events = g_ptr_array_new_with_free_func(g_free);
    return r;
}

static void recorder_free(Recorder *r)
{
    g_ptr_array_unref(r->events);
    g_free(r);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Recorder, recorder_free)

static void test_names(void)
{
    g_assert_true(wb_point_name_is_valid("pv/l1/voltage", FALSE));
    g_assert_true(wb_point_name_is_valid("dtu/114182940773/dc1/power", FALSE));
    g_assert_true(wb_point_name_is_valid("a.b_c-D", FALSE));
    g_assert_false(wb_point_name_is_valid("", FALSE));
    g_assert_false(wb_point_name_is_valid("pv//power", FALSE));
    g_assert_false(wb_point_name_is_valid("/pv/power", FALSE));
    g_assert_false(wb_point_name_is_valid("pv/power/", FALSE));
    g_assert_false(wb_point_name_is_valid("pv/po wer", FALSE));
    g_assert_false(wb_point_name_is_valid("pv/+/power", FALSE));
    g_assert_true(wb_point_name_is_valid("pv/+/power", TRUE));
    g_assert_true(wb_point_name_is_valid("pv/#", TRUE));
    g_assert_true(wb_point_name_is_valid("#", TRUE));
    g_assert_false(wb_point_name_is_valid("pv/#/power", TRUE));
    g_assert_false(wb_point_name_is_valid("pv/l+/power", TRUE));
}

static void test_wildcards(void)
{
    g_assert_true(wb_point_pattern_match("pv/power", "pv/power"));
    g_assert_false(wb_point_pattern_match("pv/power", "pv/powers"));
    g_assert_false(wb_point_pattern_match("pv/power", "pv/power/x"));
    g_assert_true(wb_point_pattern_match("pv/+/voltage", "pv/l1/voltage"));
    g_assert_false(wb_point_pattern_match("pv/+/voltage", "pv/l1/x/voltage"));
    g_assert_false(wb_point_pattern_match("pv/+/voltage", "pv/voltage"));
    g_assert_true(wb_point_pattern_match("pv/#", "pv/l1/voltage"));
    g_assert_true(wb_point_pattern_match("pv/#", "pv"));
    g_assert_true(wb_point_pattern_match("#", "anything/at/all"));
    g_assert_false(wb_point_pattern_match("pv/#", "grid/power"));
    g_assert_true(wb_point_pattern_match("+/power", "grid/power"));
    g_assert_false(wb_point_pattern_match("+/power", "grid/l1/power"));
    g_assert_true(wb_point_pattern_match("+/+/+", "a/b/c"));
}

static void test_batch(Fixture *f, gconstpointer data)
{
    g_autoptr(Recorder) phases = recorder_new();
    g_autoptr(Recorder) total = recorder_new();
    wb_subscribe(f->sink, "pv/+/power", 0, on_point, on_end, phases);
    wb_subscribe(f->sink, "pv/power", 0, on_point, on_end, total);

    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "l1/power", 1000, NULL);
    wb_batch_add_double(b, "l2/power", 2000, NULL);
    wb_batch_add_double(b, "power", 3000, NULL);
    wb_batch_add_double(b, "l1/voltage", 230, NULL);
    wb_batch_commit(b);

    g_autofree char *p = joined(phases);
    g_autofree char *t = joined(total);
    /* each subscription: its points in batch order, then exactly one END */
    g_assert_cmpstr(p, ==, "pv/l1/power=1000/valid pv/l2/power=2000/valid END");
    g_assert_cmpstr(t, ==, "pv/power=3000/valid END");

    /* a batch with nothing for a subscription does not call it */
    b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "l1/voltage", 231, NULL);
    wb_batch_commit(b);
    g_autofree char *none = joined(phases);
    g_assert_cmpstr(none, ==, "");

    /* units come from quantities.h unless given */
    const WbPoint *pt = wb_point_store_lookup(wb_daemon_get_points(f->daemon), "pv/l1/voltage");
    g_assert_nonnull(pt);
    g_assert_cmpstr(wb_point_get_unit(pt), ==, "V");
    g_assert_cmpfloat(wb_point_get_double(pt), ==, 231);
}

static void test_many_patterns(Fixture *f, gconstpointer data)
{
    g_autoptr(Recorder) r = recorder_new();
    WbSubscription *sub = wb_subscribe(f->sink, "pv/power", 0, on_point, on_end, r);
    wb_subscription_add_pattern(sub, "pv/l1/voltage");
    wb_subscription_add_pattern(sub, "pv/+/voltage"); /* overlaps the one before */
    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "power", 1, NULL);
    wb_batch_add_double(b, "l1/voltage", 230, NULL);
    wb_batch_add_double(b, "l2/voltage", 231, NULL);
    wb_batch_add_double(b, "frequency", 50, NULL);
    wb_batch_commit(b);
    g_autofree char *s = joined(r);
    /* each matching point once, one END for the batch */
    g_assert_cmpstr(s, ==, "pv/power=1/valid pv/l1/voltage=230/valid pv/l2/voltage=231/valid END");

    /* a pattern added later delivers the points that already exist */
    wb_subscription_add_pattern(sub, "pv/frequency");
    g_assert_cmpuint(r->events->len, ==, 0);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_autofree char *later = joined(r);
    g_assert_cmpstr(later, ==, "pv/frequency=50/valid END");
}

typedef struct {
    WbInstance *pv;
    int ends;
} Nester;

static void on_a_publish_c(const WbPoint *p, WbPointState state, gpointer user_data)
{
    Nester *n = user_data;
    WbBatch *b = wb_batch_new(n->pv);
    wb_batch_add_double(b, "c", 3, NULL);
    wb_batch_commit(b);
}

static void ignore_point(const WbPoint *p, WbPointState state, gpointer user_data)
{
}

static void count_end(gpointer user_data)
{
    ((Nester *)user_data)->ends++;
}

/* A point callback that commits a batch of its own: each batch still ends
 * once for a subscription both reach. */
static void test_nested_commit(Fixture *f, gconstpointer data)
{
    Nester n = {.pv = f->pv};
    wb_subscribe(f->sink, "pv/#", 0, ignore_point, count_end, &n);
    wb_subscribe(f->sink, "pv/a", 0, on_a_publish_c, NULL, &n);
    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "a", 1, NULL);
    wb_batch_add_double(b, "b", 2, NULL);
    wb_batch_commit(b);
    g_assert_cmpint(n.ends, ==, 2); /* the nested batch's, then the outer one's */
}

static void test_states(Fixture *f, gconstpointer data)
{
    g_autoptr(Recorder) r = recorder_new();
    wb_subscribe(f->sink, "pv/#", 0, on_point, NULL, r);

    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "power", 500, NULL);
    wb_batch_add_string(b, "serial", "ABC123");
    wb_batch_commit(b);
    b = wb_batch_new(f->pv);
    wb_batch_add_invalid(b, "power");
    wb_batch_add_double(b, "frequency", NAN, NULL);
    wb_batch_commit(b);
    g_autofree char *s = joined(r);
    /* invalid keeps the last value for inspection; NaN publishes invalid */
    g_assert_cmpstr(s, ==,
                    "pv/power=500/valid pv/serial=ABC123/valid pv/power=500/invalid pv/frequency=nan/invalid");
    const WbPoint *p = wb_point_store_lookup(wb_daemon_get_points(f->daemon), "pv/power");
    g_assert_cmpint(wb_point_get_state(p), ==, WB_POINT_INVALID);
    const WbPoint *serial = wb_point_store_lookup(wb_daemon_get_points(f->daemon), "pv/serial");
    g_assert_true(wb_point_is_string(serial));
    g_assert_cmpstr(wb_point_get_unit(serial), ==, "");
}

static gboolean quit_loop(gpointer loop)
{
    g_main_loop_quit(loop);
    return G_SOURCE_REMOVE;
}

static void run_for(guint ms)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    g_timeout_add(ms, quit_loop, loop);
    g_main_loop_run(loop);
}

static void test_staleness(Fixture *f, gconstpointer data)
{
    g_autoptr(Recorder) fast = recorder_new();
    g_autoptr(Recorder) slow = recorder_new();
    wb_subscribe(f->sink, "pv/power", 100 * 1000, on_point, on_end, fast);
    wb_subscribe(f->sink, "pv/power", 10 * G_USEC_PER_SEC, on_point, on_end, slow);

    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "power", 42, NULL);
    wb_batch_commit(b);
    run_for(300);
    g_autofree char *a = joined(fast);
    g_autofree char *c = joined(slow);
    /* max-age is per subscription: one went stale (once, with a batch end),
     * the other did not */
    g_assert_cmpstr(a, ==, "pv/power=42/valid END pv/power=42/stale END");
    g_assert_cmpstr(c, ==, "pv/power=42/valid END");

    /* new data makes it valid again, and it goes stale again later */
    b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "power", 43, NULL);
    wb_batch_commit(b);
    run_for(300);
    g_autofree char *d = joined(fast);
    g_assert_cmpstr(d, ==, "pv/power=43/valid END pv/power=43/stale END");

    /* an invalid point also goes stale when nothing new comes */
    b = wb_batch_new(f->pv);
    wb_batch_add_invalid(b, "power");
    wb_batch_commit(b);
    run_for(300);
    g_autofree char *e = joined(fast);
    g_assert_cmpstr(e, ==, "pv/power=43/invalid END pv/power=43/stale END");
}

static void test_old_sample(Fixture *f, gconstpointer data)
{
    /* a sample measured before max-age arrives already stale */
    g_autoptr(Recorder) r = recorder_new();
    wb_subscribe(f->sink, "pv/power", G_USEC_PER_SEC, on_point, NULL, r);
    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_set_time(b, g_get_real_time() - 5 * G_USEC_PER_SEC);
    wb_batch_add_double(b, "power", 7, NULL);
    wb_batch_commit(b);
    g_autofree char *s = joined(r);
    g_assert_cmpstr(s, ==, "pv/power=7/stale");
    const WbPoint *p = wb_point_store_lookup(wb_daemon_get_points(f->daemon), "pv/power");
    g_assert_cmpint(wb_point_get_age(p), >=, 5 * G_USEC_PER_SEC);
}

static void test_initial_delivery(Fixture *f, gconstpointer data)
{
    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "l1/power", 1, NULL);
    wb_batch_add_double(b, "l2/power", 2, NULL);
    wb_batch_commit(b);

    g_autoptr(Recorder) r = recorder_new();
    wb_subscribe(f->sink, "pv/+/power", 0, on_point, on_end, r);
    /* never from inside wb_subscribe() */
    g_assert_cmpuint(r->events->len, ==, 0);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_autofree char *s = joined(r);
    g_assert_true(g_str_equal(s, "pv/l1/power=1/valid pv/l2/power=2/valid END") ||
                  g_str_equal(s, "pv/l2/power=2/valid pv/l1/power=1/valid END"));
}

typedef struct {
    WbSubscription *self;
    int calls;
} SelfRemover;

static void remove_self(const WbPoint *p, WbPointState state, gpointer user_data)
{
    SelfRemover *s = user_data;
    s->calls++;
    wb_subscription_free(s->self);
}

static void test_remove_in_callback(Fixture *f, gconstpointer data)
{
    SelfRemover s = {0};
    g_autoptr(Recorder) r = recorder_new();
    s.self = wb_subscribe(f->sink, "pv/#", 0, remove_self, NULL, &s);
    wb_subscribe(f->sink, "pv/#", 0, on_point, NULL, r);
    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "a/power", 1, NULL);
    wb_batch_add_double(b, "b/power", 2, NULL);
    wb_batch_commit(b);
    /* removed during the batch: called once, never again; others unaffected */
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_cmpuint(r->events->len, ==, 2);
    b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "a/power", 3, NULL);
    wb_batch_commit(b);
    g_assert_cmpint(s.calls, ==, 1);
}

static void test_cleanup_on_stop(Fixture *f, gconstpointer data)
{
    g_autoptr(Recorder) r = recorder_new();
    wb_subscribe(f->sink, "pv/power", 0, on_point, NULL, r);
    /* the host removes an instance's subscriptions when it stops */
    wb_instance_run_cleanups(f->sink);
    WbBatch *b = wb_batch_new(f->pv);
    wb_batch_add_double(b, "power", 1, NULL);
    wb_batch_commit(b);
    g_assert_cmpuint(r->events->len, ==, 0);
}

typedef struct {
    double worst;
    guint count;
} Lag;

static void on_lag(const WbPoint *p, WbPointState state, gpointer user_data)
{
    Lag *lag = user_data;
    g_assert_cmpstr(wb_point_get_unit(p), ==, "s");
    lag->worst = MAX(lag->worst, wb_point_get_double(p));
    lag->count++;
}

static gboolean block_loop(gpointer data)
{
    g_usleep(300 * 1000); /* a callback that overruns */
    return G_SOURCE_REMOVE;
}

/* host/main-loop-lag: published every second, the worst overrun of the
 * 50 ms timer; a 300 ms block shows as about 0.3 s. */
static void test_main_loop_lag(Fixture *f, gconstpointer data)
{
    Lag quiet = {0}, blocked = {0};
    wb_daemon_start(f->daemon);
    WbSubscription *sub = wb_subscribe(f->sink, "host/main-loop-lag", 0, on_lag, NULL, &quiet);
    run_for(2300);
    g_assert_cmpuint(quiet.count, >=, 2);
    g_assert_cmpfloat(quiet.worst, <, 0.2);
    wb_subscription_free(sub);
    wb_subscribe(f->sink, "host/main-loop-lag", 0, on_lag, NULL, &blocked);
    g_timeout_add(200, block_loop, NULL);
    run_for(2300);
    g_test_message("quiet %.4f s, blocked %.4f s", quiet.worst, blocked.worst);
    g_assert_cmpfloat(blocked.worst, >=, 0.25);
    g_assert_cmpfloat(blocked.worst, <, 1.0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/points/names", test_names);
    g_test_add_func("/points/wildcards", test_wildcards);
    g_test_add("/points/batch", Fixture, NULL, fixture_setup, test_batch, fixture_teardown);
    g_test_add("/points/many-patterns", Fixture, NULL, fixture_setup, test_many_patterns, fixture_teardown);
    g_test_add("/points/nested-commit", Fixture, NULL, fixture_setup, test_nested_commit, fixture_teardown);
    g_test_add("/points/states", Fixture, NULL, fixture_setup, test_states, fixture_teardown);
    g_test_add("/points/staleness", Fixture, NULL, fixture_setup, test_staleness, fixture_teardown);
    g_test_add("/points/old-sample", Fixture, NULL, fixture_setup, test_old_sample, fixture_teardown);
    g_test_add("/points/initial-delivery", Fixture, NULL, fixture_setup, test_initial_delivery, fixture_teardown);
    g_test_add("/points/remove-in-callback", Fixture, NULL, fixture_setup, test_remove_in_callback,
               fixture_teardown);
    g_test_add("/points/main-loop-lag", Fixture, NULL, fixture_setup, test_main_loop_lag, fixture_teardown);
    g_test_add("/points/cleanup-on-stop", Fixture, NULL, fixture_setup, test_cleanup_on_stop, fixture_teardown);
    return g_test_run();
}
