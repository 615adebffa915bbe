"""policy_node (lifecycle): ``ate_ros/Observation`` -> ``ate_ros/ActionChunk``.

Lifecycle:
    configure  loads the embodiment, the policy (our checkpoint directory, ``lerobot:<dir>``
               or a built-in: hold, wave) and, when ``vae`` is set, the stage-2 alignment
               VAE (OOD monitor); creates the publishers and the observation subscription
               (or, with ``observation_source: sensors``, the camera / joint_states ones).
    activate   warms the policy up (one dummy inference) and starts the inference thread.
    deactivate publishes a stop request (an empty chunk, ``hold_on_stop``), stops the
               thread, aborts goals.
    cleanup    destroys publishers/subscription and frees the model.
The RunPolicy action server lives as long as the node and rejects goals unless it is active:
rclpy stops spinning with an RCLError when a waitable is destroyed while another
executor thread builds its wait set, and an action server destroyed while a client's executor
holds it in a wait set lingers beside its successor, which the client then may not match.

Topics (relative): subscribes ``observation`` (SensorDataQoS depth 1: the freshest only), or
with ``observation_source: sensors`` the embodiment's camera topics, ``joint_states``,
``environment_state`` (only for a policy with ``env_state_dim > 0``) and ``instruction`` itself
(:class:`ate_ros.ros.sensor_inputs.SensorInputs`, set up by ``sensors.*``; no perception_node is
needed: one DDS hop and the Observation's image copy are saved, see docs/benchmarks.md;
frames are decoded on the inference thread);
publishes ``action_chunk`` (stamped with the observation time, inference latency and OOD score:
the latent distance of the chunk to the adaptation distribution, NaN without a VAE),
``~/predicted_chunks`` (visualization_msgs/MarkerArray), ``/diagnostics``.
Action: ``run_policy`` (ate_ros/action/RunPolicy): the goal's instruction overrides the
observation's; feedback per chunk; ends after ``max_duration`` (node clock) or on cancel, after
which the node publishes a stop request (an empty chunk) and pauses until the next goal.

Inference runs in a thread of its own (:class:`ate_ros.ros.inference_thread.InferenceThread`,
configure..cleanup): the observation subscriptions live on a hidden helper node
(``_<node name>_inputs``) that this thread spins, and the model runs in their callbacks. So a
slow model never blocks the node's executor (services, the action server, goals), and an
observation reaches the model without a hand-off between threads. Observations that arrive while
the model runs wait in the depth-1 queue: the model always gets the newest. Which observations
reach the model (older than ``max_obs_age`` on the node clock: refused and counted; paused; rate)
and when a goal ends are decided by the ROS-free :class:`ate_ros.core.execution.PolicyGate`.
With ``chunking: rtc`` (or ``sync``) the ROS-free :class:`ate_ros.core.deploy.chunk_timing.
ChunkTiming` also decides when the next inference starts (the plan runs low), hands the policy
the committed prefix and stamps the chunk's ``takeover_index`` (real-time chunking).
Parameters: :class:`ate_ros.core.deploy.PolicyNodeConfig`.

Executors: no callback waits for another one, so the node spins on a SingleThreadedExecutor in
its own process (``main``). A RunPolicy goal is a coroutine that awaits its end
(:class:`ate_ros.ros.goal_runner.GoalRunner`, whose steady-clock poll ends it on cancel, its
duration or preemption); only the transitions hold the executor thread a while (loading, warm-up,
waiting for the inference in progress). On a MultiThreadedExecutor (``ate-ros run``, tests):
goal requests and coroutines are reentrant, the goal poll mutually exclusive, the rest in the
node's default group; the gate and the goal are shared with the inference thread under one lock.
After Ctrl-C nothing publishes (:func:`ate_ros.ros.spin.publish_unless_shutdown`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from visualization_msgs.msg import MarkerArray

from ate_ros.action import RunPolicy
from ate_ros.core.deploy import (
    ACTION_CHUNK,
    OBSERVATION,
    OBSERVATION_SOURCES,
    PREDICTED_CHUNKS,
    RUN_POLICY,
    LatencyStats,
    PolicyNodeConfig,
)
from ate_ros.core.deploy.chunk_timing import ChunkTiming
from ate_ros.core.deploy.policy_factory import load_run_policy
from ate_ros.core.deploy.policy_gate import Admission, Health, PolicyGate
from ate_ros.core.deploy.policy_inference import (
    infer_chunk,
    predict,
    sample_seed,
    warmup_observation,
)
from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.execution import GoalEnd, GoalOutcome
from ate_ros.core.policy_contract import ChunkPolicy, PolicyObservation, supports_rtc
from ate_ros.msg import ActionChunk, Observation
from ate_ros.nodes.visualization import polylines_to_markers
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import ERROR, OK, WARN, NodeDiagnostics
from ate_ros.ros.goal_runner import GoalRun, GoalRunner, result_code, settle
from ate_ros.ros.inference_thread import InferenceThread
from ate_ros.ros.lifecycle import ReleasingLifecycleNode
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ate_ros.ros.sensor_inputs import SensorInputs, SensorSnapshot
from ate_ros.ros.spin import publish_unless_shutdown, spin_node, unless_shutdown

PolicyFactory = Callable[[PolicyNodeConfig, Embodiment], ChunkPolicy]

_to_s = conv.time_to_sec
_LEVELS = {Health.OK: OK, Health.WARN: WARN, Health.ERROR: ERROR}


def load_chunk_policy(config: PolicyNodeConfig, embodiment: Embodiment) -> ChunkPolicy:
    """The default policy factory: a built-in, ``lerobot:<dir>`` or our checkpoint folder
    (:func:`ate_ros.core.deploy.policy_factory.load_run_policy`, shared with run and eval)."""
    return load_run_policy(config.policy, embodiment, config.device, config.num_steps or None)


class PolicyNode(ReleasingLifecycleNode):
    """Runs a chunk policy on observations. See the module docstring.

    Args:
        config: Defaults for the parameters (overrides and YAML still win).
        policy_factory: Builds the policy in on_configure (tests inject doubles here);
            default :func:`load_chunk_policy`.
    """

    cleanup_message = "cleaned up: model freed"

    def __init__(self, config: PolicyNodeConfig | None = None, *,
                 policy_factory: PolicyFactory | None = None, node_name: str = "policy_node",
                 **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.params = DataclassParameters(self, PolicyNodeConfig, defaults=config,
                                          on_change=self._reconfigure)
        self._factory = policy_factory or load_chunk_policy
        self.embodiment: Embodiment | None = None
        self.policy: ChunkPolicy | None = None
        self.alignment = None
        self.history = None
        self._chunk_pub = self._marker_pub = self._obs_sub = None
        self.inputs: SensorInputs | None = None  # observation_source: sensors
        # Holds the input subscriptions and runs the model in their callbacks (configure..cleanup).
        self._inference: InferenceThread | None = None
        # Goal/cancel/result requests and the goal coroutines: nothing in them blocks.
        self._action_group = ReentrantCallbackGroup()
        # Guards the gate and the running goal between the executor and inference threads.
        self._lock = threading.RLock()
        cfg = self.params.config
        self.gate = PolicyGate(cfg.max_obs_age, cfg.rate_hz)
        self.timing: ChunkTiming | None = None  # chunking rtc / sync (configure..cleanup)
        self._goals = GoalRunner(self, self._poll_goal, self._lock)
        self.errors = 0
        self.last_latency = float("nan")
        self.last_ood = float("nan")
        self.latency = LatencyStats()
        self.model_time = LatencyStats()
        self.diagnostics = NodeDiagnostics(self, "policy",
                                           period=self.params.config.diagnostics_period)
        self.diagnostics.add_provider(self._diagnose)
        # Last: its callbacks use the state above (see the module docstring for its lifetime).
        self._action_server = ActionServer(
            self, RunPolicy, RUN_POLICY, self._execute_goal, callback_group=self._action_group,
            goal_callback=self._on_goal, cancel_callback=lambda _req: CancelResponse.ACCEPT)

    @property
    def config(self) -> PolicyNodeConfig:
        return self.params.config

    @property
    def chunks(self) -> int:
        """Chunks published since the node was created."""
        return self.gate.chunks

    @property
    def refused_stale(self) -> int:
        """Observations refused as older than ``max_obs_age``."""
        return self.gate.refused_stale

    @property
    def _running(self) -> bool:
        return self.gate.running

    def _reconfigure(self, cfg: PolicyNodeConfig) -> None:
        """A run-time parameter change (the rest of the config is read where it is used)."""
        with self._lock:
            self.gate.max_obs_age, self.gate.rate_hz = cfg.max_obs_age, cfg.rate_hz
        inputs = self.inputs
        if inputs is not None:
            inputs.reconfigure(cfg.sensors)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ----- lifecycle ----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        try:
            self.embodiment = load_embodiment(cfg.embodiment)
            self.policy = self._factory(cfg, self.embodiment)
            self._limit_threads()
            self._configure_chunking(cfg)
            if cfg.vae:
                from ate_ros.core.align.artifacts import load_alignment

                self.alignment = load_alignment(cfg.vae, device=cfg.device)
        except Exception as exc:  # noqa: BLE001 - any load failure is a failed transition
            self.get_logger().error(f"configure failed: {exc}")
            self.policy = self.alignment = None
            return TransitionCallbackReturn.FAILURE
        if cfg.publish_markers:
            from ate_ros.core.viz.chunk_paths import ChunkHistory, ChunkVizConfig
            from ate_ros.core.viz.ee_kinematics import load_kinematics

            self.history = ChunkHistory(load_kinematics(self.embodiment, cfg.kinematics),
                                        ChunkVizConfig(history=cfg.viz_history))
            self._marker_pub = self.create_lifecycle_publisher(MarkerArray, PREDICTED_CHUNKS,
                                                               LATCHED_QOS)
        self._chunk_pub = self.create_lifecycle_publisher(ActionChunk, ACTION_CHUNK, COMMAND_QOS)
        self._inference = InferenceThread(self)
        if cfg.observation_source == OBSERVATION_SOURCES[1]:
            self.inputs = SensorInputs(self._inference.node, self.embodiment, cfg.sensors,
                                       on_ready=self._on_sensors, owner=self,
                                       env_state_dim=self._env_state_dim)
        else:
            self._obs_sub = self._inference.node.create_subscription(
                Observation, self._inference.topic(OBSERVATION), self._on_observation,
                SENSOR_QOS)
        self.get_logger().info(
            f"configured: policy {cfg.policy!r} (H={self.policy.chunk_size}) for "
            f"{self.embodiment.name}, OOD monitor {'on' if self.alignment else 'off'}, "
            f"observations from {self._source()}")
        return super().on_configure(state)

    def _configure_chunking(self, cfg: PolicyNodeConfig) -> None:
        """The inference trigger and the policy's RTC settings for ``cfg.chunking``."""
        self.timing = None
        if cfg.chunking in ("rtc", "sync"):
            self.timing = ChunkTiming(self.embodiment.control_period, cfg.chunking,
                                      cfg.latency_quantile, cfg.rtc_margin)
        if cfg.chunking == "rtc":
            if hasattr(self.policy, "set_rtc"):
                self.policy.set_rtc(cfg.rtc)
            if not supports_rtc(self.policy):
                self.get_logger().warning(
                    f"chunking rtc: policy {cfg.policy!r} takes no committed prefix; its chunks "
                    "are stamped with the takeover index but not inpainted")

    def _source(self) -> str:
        if self.inputs is None:
            return f"topic {self._obs_sub.topic_name}"
        return f"sensors {self.inputs.topics[:-1]}"

    def _limit_threads(self) -> None:
        """Apply ``torch_threads`` (process-wide) when a model imported torch: a small model on
        many intra-op threads competes with the executor, DDS and simulation threads."""
        torch = sys.modules.get("torch")
        n = self.config.torch_threads
        if torch is None or n <= 0 or not self.config.device.startswith("cpu"):
            return
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
            self.get_logger().info(f"torch intra-op threads: {n}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.config.warmup:
            try:
                t0 = time.perf_counter()
                predict(self.policy, warmup_observation(self.embodiment, self.policy,
                                                        self._env_state_dim),
                        self.config.num_steps or None)
                getattr(self.policy, "reset", lambda: None)()  # no made-up observation history
                self.get_logger().info(f"warm-up inference {1e3 * (time.perf_counter() - t0):.1f}"
                                       " ms")
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"warm-up failed: {exc}")
                return TransitionCallbackReturn.FAILURE
        with self._lock:
            self.gate.activate(self.config.require_goal)
        self._inference.start()
        ret = super().on_activate(state)
        self.get_logger().info("activated")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_inference()
        if self.config.hold_on_stop:
            self._publish_hold("deactivated")
        with self._lock:
            self._finish(self.gate.deactivate())  # no newer goal: its end publishes no hold
        self.get_logger().info("deactivated: holding")
        return super().on_deactivate(state)

    def _halt(self) -> None:
        self.stop_inference()

    def stop_inference(self) -> None:
        """Stop taking observations; returns once the inference in progress is done (no chunk
        is published after it). Also at process exit, before the node is destroyed."""
        with self._lock:
            self.gate.active = self.gate.running = False
        if self._inference is not None:
            self._inference.stop()

    def _release(self) -> None:
        with self._lock:
            self._finish(self.gate.end_goal(GoalOutcome.ABORTED, "shut down"))
        if self.inputs is not None:
            self.inputs.destroy()
            self.inputs = None
        if self._inference is not None:  # with the helper node, the observation subscription
            self._inference.destroy()
            self._inference = None
            self._obs_sub = None
        for pub in (self._chunk_pub, self._marker_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._chunk_pub = self._marker_pub = None
        self.policy = self.alignment = self.history = self.timing = None
        torch = sys.modules.get("torch")  # only if a model imported it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----- observations (on the inference thread) -----------------------------------------
    def _on_observation(self, msg: Observation) -> None:
        self._handle(msg, _to_s(msg.header.stamp))

    def _on_sensors(self) -> None:
        """observation_source: sensors: a new frame (decoded only if it is used)."""
        inputs = self.inputs
        snap = inputs.snapshot() if inputs is not None else None
        if snap is not None:
            self._handle(snap, snap.stamp)

    def _handle(self, item: Observation | SensorSnapshot, stamp: float) -> None:
        """Run the model on the newest observation, unless it is stale, paused or too soon."""
        now = self._now()
        if not self.context.ok():
            return  # nothing after Ctrl-C
        with self._lock:
            admission = self.gate.admit(now, stamp)
        if admission is Admission.STALE:
            self.get_logger().warning(f"stale observation refused ({now - stamp:.3f}s old > "
                                      f"max_obs_age {self.gate.max_obs_age}s)",
                                      throttle_duration_sec=5.0)
        if admission is not Admission.RUN:
            return
        with self._lock:
            if self.timing is not None and not self.timing.due(now):
                return  # rtc / sync: the plan has points enough left
        try:
            model_input = self._policy_observation(item)
            if model_input is not None:
                self._infer(*model_input)
        except Exception as exc:  # noqa: BLE001 - keep serving; report in diagnostics
            self.errors += 1
            self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)

    def _policy_observation(self, item: Observation | SensorSnapshot
                            ) -> tuple[PolicyObservation, Any] | None:
        """The model's input and the stamp its chunk carries (a message's own, exactly), from
        an Observation message or (sensors) a snapshot; None when a frame of the snapshot
        cannot be decoded (counted by the inputs)."""
        if isinstance(item, SensorSnapshot):
            obs = self.inputs.policy_observation(item)  # a snapshot comes from self.inputs
            if obs is None:
                return None
            stamp = conv.sec_to_time(item.stamp)
        else:
            obs = conv.msg_to_policy_observation(item, self.embodiment, self._env_state_dim)
            stamp = item.header.stamp
        instruction = self.gate.instruction
        if instruction is not None:
            obs.instruction = instruction  # the RunPolicy goal wins
        return obs, stamp

    @property
    def _env_state_dim(self) -> int:
        """Width of the environment state the policy reads (0: none; built-ins read none)."""
        return int(getattr(self.policy, "env_state_dim", 0) or 0)

    def _infer(self, obs: PolicyObservation, stamp: Any) -> None:
        """One chunk for ``obs``, published stamped ``stamp`` (the observation's, exactly)."""
        cfg, emb = self.config, self.embodiment
        prefix, takeover = None, 0
        if self.timing is not None:
            with self._lock:  # the committed points for obs + (i+1) dt, unified; delay d
                prefix, takeover = self.timing.request(obs.stamp)
        result = infer_chunk(self.policy, obs, num_steps=cfg.num_steps or None,
                             seed=sample_seed(cfg.seed), num_samples=cfg.num_samples,
                             alignment=self.alignment, prefix=prefix, delay=takeover)
        chunk_u, samples_u, model_s, ood = (result.chunk, result.samples, result.model_s,
                                            result.ood)  # (H, 128) unified joint targets
        with self._lock:
            self.gate.inferred(obs.stamp)
        latency = self._now() - obs.stamp
        chunk = emb.from_unified(chunk_u)  # (H, D) in joint order
        samples = [emb.from_unified(s) for s in samples_u]
        out = conv.chunk_to_msg(chunk, emb, stamp, model_id=str(cfg.policy),
                                inference_latency=latency, ood_score=ood, samples=samples,
                                takeover_index=takeover)
        with self._lock:
            if not self.gate.running:
                return  # deactivated or canceled while the model was running
            if not publish_unless_shutdown(self, self._chunk_pub, out):
                return  # Ctrl-C shut the context down while the model was running
            self.gate.published()
            if self.timing is not None:
                self.timing.published(chunk_u, obs.stamp, takeover, self._now())
        self.last_latency, self.last_ood = latency, ood
        self.latency.add(latency)
        self.model_time.add(model_s)
        if self.history is not None and self._marker_pub is not None:
            self.history.add_executed(obs.qpos[emb.slots])
            self.history.add_chunk(chunk, samples)
            if cfg.chunking == "rtc":
                executing = (np.zeros((0, emb.dof)) if prefix is None
                             else emb.from_unified(prefix))
                self.history.set_rtc(executing[:takeover], executing, chunk[takeover:])
            publish_unless_shutdown(self, self._marker_pub, polylines_to_markers(
                self.history.polylines(), self.history.frame, stamp))

    def _publish_hold(self, why: str) -> None:
        """A stop request: a chunk without points, stamped now (see ActionChunk.msg). The
        executor holds where the robot *is*; a chunk at the last observed position would pull
        the arm back to where it was when that observation was taken."""
        if self._chunk_pub is None or self.embodiment is None:
            return
        if self.timing is not None:
            with self._lock:
                self.timing.reset()  # the executor drops its plan
        publish_unless_shutdown(self, self._chunk_pub, conv.chunk_to_msg(
            np.zeros((0, self.embodiment.dof)), self.embodiment, conv.sec_to_time(self._now()),
            model_id=f"hold ({why})"))

    # ----- RunPolicy action ---------------------------------------------------------------
    def _on_goal(self, request) -> GoalResponse:
        if not self.gate.active:
            self.get_logger().warning("RunPolicy goal rejected: node is not active")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    async def _execute_goal(self, goal_handle) -> RunPolicy.Result:
        """A goal's coroutine: starts the goal, awaits its end (:meth:`_poll_goal`), finishes.

        It never blocks an executor thread, so the node serves observations, cancels and
        lifecycle transitions on a single thread while a goal runs.
        """
        req = goal_handle.request
        with self._lock:
            goal, ended = self.gate.start_goal(self._now(), req.max_duration, req.instruction)
            self._goals.finish_ended(ended)  # the preempted goal, still the runner's
            run = self._goals.begin(goal_handle, goal, poll=self.gate.goal is goal)
            self._goals.finish_ended(ended)  # this one, when the node is not active
        if self.gate.goal is goal:
            self.get_logger().info(f"RunPolicy: {req.instruction!r} for "
                                   f"{req.max_duration or 'unlimited'} s")
        end: GoalEnd = await run.done
        result = RunPolicy.Result(outcome=result_code(RunPolicy.Result, end.outcome),
                                  reason=end.message, chunks=self.chunks - goal.start_chunks)
        if self.gate.is_latest(goal) and self.config.hold_on_stop:
            self._publish_hold(end.message)
        settle(goal_handle, end.outcome, self.context)
        self.get_logger().info(f"RunPolicy ended: {end.message} after {result.chunks} chunks")
        return result

    def _poll_goal(self, run: GoalRun) -> None:
        """Goal timer: end the running goal on cancel, preemption or its duration; feedback."""
        with self._lock:
            step = self.gate.poll_goal(run.data, self._now(), run.handle.is_cancel_requested)
            self._finish(step.end)
        if step.feedback is not None and self.context.ok():
            fb = RunPolicy.Feedback(chunks=step.feedback, last_latency=float(self.last_latency),
                                    ood_score=float(self.last_ood))
            with unless_shutdown(self.context):
                run.handle.publish_feedback(fb)

    def _finish(self, end: GoalEnd | None) -> None:
        """Resolve the coroutine of a goal the gate ended (once; any thread)."""
        if end is not None:
            self._goals.finish_ended([end])

    def destroy_node(self) -> None:
        """Stop inference, destroy the RunPolicy server, then the rest of the node.

        rclpy's ``destroy_node`` leaves waitables alone: the server would stay in the graph, and
        keep the DDS participant alive, until the node object is garbage-collected. Peers then see
        a server that no longer answers; one that is half torn down (requests still read, no
        responses written) makes a client's ``wait_for_server`` false even for a live server
        beside it.
        """
        self.stop_inference()
        if self._inference is not None:  # configured: the helper node would linger too
            self._inference.destroy()
            self._inference = None
        self._action_server.destroy()
        super().destroy_node()

    # ----- diagnostics --------------------------------------------------------------------
    def _diagnose(self) -> dict:
        lat, model = self.latency.summary(), self.model_time.summary()
        health, message = self.gate.health(self.errors)
        self.diagnostics.status(_LEVELS[health], message)
        out = {"chunks_published": self.chunks, "inference_latency_p50_s": lat["p50"],
               "inference_latency_p99_s": lat["p99"], "model_time_p50_s": model["p50"],
               "stale_observations_refused": self.refused_stale,
               "ood_score": self.last_ood, "inference_errors": self.errors}
        timing = self.timing
        if timing is not None:  # chunking rtc / sync: the delay its chunks are stamped with
            out["inference_delay_periods"] = timing.latency.periods()
        inputs = self.inputs
        if inputs is not None:  # observation_source: sensors: the inputs' own counts
            out.update({f"sensors_{k}": v for k, v in inputs.diagnostics().items()})
            if inputs.last_refusal and self.errors == 0:
                self.diagnostics.status(WARN, inputs.last_refusal)
            inputs.last_refusal = ""
        return out


def main(args: list[str] | None = None) -> int:
    # Nothing blocks an executor thread (see the module docstring): one thread is enough.
    return spin_node(PolicyNode, args, before_destroy=lambda n: n.stop_inference(),
                     single_threaded=True)


if __name__ == "__main__":
    sys.exit(main())
