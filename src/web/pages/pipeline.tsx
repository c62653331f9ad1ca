import { useQuery, useQueryClient } from '@tanstack/react-query';
import {
  Background,
  Controls,
  Handle,
  Position,
  ReactFlow,
  type Edge,
  type Node,
  type NodeProps,
} from '@xyflow/react';
import ELK from 'elkjs/lib/elk.bundled.js';
import { useEffect, useState } from 'react';
import { ActionButton, ErrorBox, Loading } from '../components/common.js';
import { api, type ModuleRecord } from '../lib/api.js';
import { time } from '../lib/format.js';
import { Link, navigate } from '../lib/router.js';

/**
 * The pipeline: modules and the event types they subscribe to and publish, laid out by ELK's
 * layered algorithm with a fixed seed (the same pipeline always looks the same). The graph
 * is small (modules, not jobs), so the layout runs on the page; traces use a tree layout.
 */

type Counts = Record<string, Record<string, number>>;
interface ModuleData extends Record<string, unknown> {
  module: ModuleRecord;
  counts: Record<string, number> | undefined;
  cap: number;
}
interface TypeData extends Record<string, unknown> {
  type: string;
}

export function useModules() {
  return useQuery({
    queryKey: ['modules'],
    queryFn: () => api<{ modules: ModuleRecord[] }>('/v1/modules').then((r) => r.modules),
  });
}

export function useCounts() {
  return useQuery({
    queryKey: ['counts'],
    queryFn: () => api<{ cap: number; counts: Counts }>('/v1/dashboard/modules'),
  });
}

function count(n: number | undefined, cap: number): string {
  if (n === undefined) return '…';
  return n >= cap ? `${cap}+` : String(n);
}

function ModuleNode(props: NodeProps<Node<ModuleData>>) {
  const { module, counts, cap } = props.data;
  return (
    <div className={`flow-node module ${module.paused ? 'paused' : ''}`}>
      <Handle type="target" position={Position.Left} />
      <strong>{module.name}</strong> <span className="muted">v{module.version}</span>
      {module.paused ? <span className="badge state-paused">paused</span> : null}
      <div className="counts">
        <span title="running">▶ {count(counts?.running, cap)}</span>
        <span title="waiting">⏸ {count(counts?.pending, cap)}</span>
        <span title="failed" className="bad">
          ✖ {count(counts?.failed, cap)}
        </span>
        <span title="dead-lettered" className="bad">
          ☠ {count(counts?.dead_lettered, cap)}
        </span>
      </div>
      <Handle type="source" position={Position.Right} />
    </div>
  );
}

function TypeNode(props: NodeProps<Node<TypeData>>) {
  return (
    <div className="flow-node type">
      <Handle type="target" position={Position.Left} />
      {props.data.type}
      <Handle type="source" position={Position.Right} />
    </div>
  );
}

const nodeTypes = { module: ModuleNode, type: TypeNode };
const elk = new ELK();

/** Nodes and edges of the pipeline, positioned by ELK. */
export async function layoutPipeline(
  modules: ModuleRecord[],
): Promise<{ nodes: { id: string; x: number; y: number }[]; edges: Edge[] }> {
  const types = new Set<string>();
  const edges: Edge[] = [];
  for (const m of modules) {
    for (const t of m.subscribes) {
      types.add(t);
      edges.push({ id: `t:${t}>m:${m.name}`, source: `t:${t}`, target: `m:${m.name}` });
    }
    for (const t of m.publishes) {
      types.add(t);
      edges.push({ id: `m:${m.name}>t:${t}`, source: `m:${m.name}`, target: `t:${t}` });
    }
  }
  const children = [
    ...modules.map((m) => ({ id: `m:${m.name}`, width: 210, height: 74 })),
    ...[...types].map((t) => ({ id: `t:${t}`, width: 170, height: 40 })),
  ];
  const laid = await elk.layout({
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.randomSeed': '1',
      'elk.spacing.nodeNode': '30',
      'elk.layered.spacing.nodeNodeBetweenLayers': '60',
    },
    children,
    edges: edges.map((e) => ({ id: e.id, sources: [e.source], targets: [e.target] })),
  });
  return {
    nodes: (laid.children ?? []).map((c) => ({ id: c.id, x: c.x ?? 0, y: c.y ?? 0 })),
    edges,
  };
}

function PipelineGraph(props: {
  modules: ModuleRecord[];
  counts: Counts | undefined;
  cap: number;
}) {
  const [layout, setLayout] = useState<Awaited<ReturnType<typeof layoutPipeline>> | null>(null);
  const shape = JSON.stringify(props.modules.map((m) => [m.name, m.subscribes, m.publishes]));
  useEffect(() => {
    let live = true;
    void layoutPipeline(props.modules).then((l) => live && setLayout(l));
    return () => {
      live = false;
    };
  }, [shape]);
  if (layout === null) return <Loading what="the graph layout" />;
  const byName = new Map(props.modules.map((m) => [m.name, m]));
  const nodes: Node[] = layout.nodes.map((n) => {
    const position = { x: n.x, y: n.y };
    if (n.id.startsWith('m:')) {
      const module = byName.get(n.id.slice(2))!;
      return {
        id: n.id,
        type: 'module',
        position,
        data: { module, counts: props.counts?.[module.name], cap: props.cap },
        ariaLabel: `module ${module.name}`,
      };
    }
    return {
      id: n.id,
      type: 'type',
      position,
      data: { type: n.id.slice(2) },
      ariaLabel: `event type ${n.id.slice(2)}`,
    };
  });
  return (
    <div className="graph" aria-label="Pipeline graph" role="figure">
      <ReactFlow
        nodes={nodes}
        edges={layout.edges}
        nodeTypes={nodeTypes}
        fitView
        nodesDraggable={false}
        nodesConnectable={false}
        proOptions={{ hideAttribution: true }}
        onNodeClick={(_e, node) => {
          if (node.id.startsWith('m:'))
            navigate(`/modules/${encodeURIComponent(node.id.slice(2))}`);
        }}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}

function PauseButton(props: { module: ModuleRecord }) {
  const client = useQueryClient();
  const action = props.module.paused ? 'resume' : 'pause';
  return (
    <ActionButton
      label={`${action === 'pause' ? 'Pause' : 'Resume'} ${props.module.name}`}
      action={() =>
        api(`/v1/modules/${encodeURIComponent(props.module.name)}/${action}`, { method: 'POST' })
      }
      onDone={() => void client.invalidateQueries({ queryKey: ['modules'] })}
    >
      {action === 'pause' ? 'Pause' : 'Resume'}
    </ActionButton>
  );
}

export function PipelinePage() {
  const modules = useModules();
  const counts = useCounts();
  if (modules.error) return <ErrorBox error={modules.error} />;
  if (modules.data === undefined) return <Loading what="modules" />;
  const cap = counts.data?.cap ?? 1000;
  return (
    <>
      <h1>Pipeline</h1>
      {modules.data.length === 0 ? (
        <p>
          No modules yet: apply a pipeline with <code>ion apply -f ion.yaml</code>.
        </p>
      ) : (
        <PipelineGraph modules={modules.data} counts={counts.data?.counts} cap={cap} />
      )}
      <table className="list">
        <caption>Modules</caption>
        <thead>
          <tr>
            <th scope="col">Module</th>
            <th scope="col">Version</th>
            <th scope="col">Subscribes</th>
            <th scope="col">Publishes</th>
            <th scope="col">Running</th>
            <th scope="col">Waiting</th>
            <th scope="col">Failed</th>
            <th scope="col">Dead-lettered</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {modules.data.map((m) => {
            const c = counts.data?.counts[m.name];
            const q = (state: string) =>
              `/jobs?module=${encodeURIComponent(m.name)}&state=${state}`;
            return (
              <tr key={m.name}>
                <td>
                  <Link to={`/modules/${encodeURIComponent(m.name)}`}>{m.name}</Link>
                </td>
                <td>{m.version}</td>
                <td>{m.subscribes.join(', ')}</td>
                <td>{m.publishes.join(', ')}</td>
                <td>
                  <Link to={q('running')}>{count(c?.running, cap)}</Link>
                </td>
                <td>
                  <Link to={q('pending')}>{count(c?.pending, cap)}</Link>
                </td>
                <td>
                  <Link to={q('failed')}>{count(c?.failed, cap)}</Link>
                </td>
                <td>
                  <Link to={q('dead_lettered')}>{count(c?.dead_lettered, cap)}</Link>
                </td>
                <td>
                  {m.paused ? 'paused ' : 'active '}
                  <PauseButton module={m} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}

export function ModulePage(props: { name: string }) {
  const path = `/v1/modules/${encodeURIComponent(props.name)}`;
  const module = useQuery({
    queryKey: ['modules', props.name],
    queryFn: () => api<ModuleRecord>(path),
  });
  const versions = useQuery({
    queryKey: ['versions', props.name],
    queryFn: () =>
      api<{ versions: { version: number; spec: unknown; createdAt: string }[] }>(
        `${path}/versions`,
      ),
  });
  if (module.error) return <ErrorBox error={module.error} />;
  if (module.data === undefined) return <Loading what="the module" />;
  const m = module.data;
  return (
    <>
      <h1>Module {m.name}</h1>
      <p>
        Version {m.version} · {m.paused ? 'paused' : 'active'} · updated {time(m.updatedAt)}{' '}
        <PauseButton module={m} />{' '}
        <Link to={`/jobs?module=${encodeURIComponent(m.name)}`}>Its jobs</Link>
      </p>
      <h2>Spec</h2>
      <pre className="code">{JSON.stringify(m, null, 2)}</pre>
      <h2>Versions</h2>
      <ErrorBox error={versions.error} />
      {(versions.data?.versions ?? [])
        .slice()
        .reverse()
        .map((v) => (
          <details key={v.version}>
            <summary>
              Version {v.version} · {time(v.createdAt)}
            </summary>
            <pre className="code">{JSON.stringify(v.spec, null, 2)}</pre>
          </details>
        ))}
    </>
  );
}
