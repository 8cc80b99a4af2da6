// Mounts GraphiQL on the page, sending queries to this service's /graphql. Access tokens go in
// the Headers tab: {"Authorization": "Bearer <token>"}.
const fetcher = GraphiQL.createFetcher({ url: new URL("/graphql", window.location.href).href });
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: "headers" }),
);
