//! The Flight SQL protocol's calls, each a few lines over [`LakeFlight`]:
//! who is calling, which statement, then the core.

use std::{pin::Pin, sync::Arc};

use arrow_array::RecordBatch;
use arrow_flight::{
    encode::FlightDataEncoderBuilder,
    flight_service_server::FlightService,
    sql::{
        server::{FlightSqlService, PeekableFlightDataStream},
        ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest,
        ActionCancelQueryResult, ActionClosePreparedStatementRequest,
        ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
        ActionEndTransactionRequest, CommandGetCatalogs, CommandGetDbSchemas,
        CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
        CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
        CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult,
        ProstMessageExt, SqlInfo, TicketStatementQuery,
    },
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures_util::{Stream, TryStreamExt};
use prost::Message as _;
use tonic::{metadata::MetadataValue, Request, Response, Status, Streaming};

use super::{
    answered::SnapshotSlot, basic_password, metadata, status, FlightStream, Handle, LakeFlight,
};
use crate::error::Error;

/// The transaction a command names, if any.
fn transaction(id: Option<&[u8]>) -> Result<Option<uuid::Uuid>, Status> {
    id.map(LakeFlight::transaction_id)
        .transpose()
        .map_err(status::status)
}

/// One metadata result as a Flight stream.
fn batch_stream(
    schema: arrow_schema::SchemaRef,
    batch: Result<RecordBatch, arrow_flight::error::FlightError>,
) -> Response<FlightStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures_util::stream::once(async move { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// The `FlightInfo` of a metadata command: its ticket is the command.
fn command_info(
    command: impl ProstMessageExt,
    schema: &arrow_schema::Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket {
        ticket: command.as_any().encode_to_vec().into(),
    };
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn primary_keys_schema() -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Schema};
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

#[tonic::async_trait]
impl FlightSqlService for LakeFlight {
    type FlightService = LakeFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let caller = self.caller(&request, "handshake").await?;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = header
            .map(|value| match basic_password(value) {
                Some(password) => password,
                None => value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .unwrap_or(value)
                    .trim()
                    .to_string(),
            })
            .unwrap_or_default();
        tracing::info!(key = %caller.prefix, "Flight handshake");
        let output = futures_util::stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        })]);
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(output));
        if !token.is_empty() {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| status::status(Error::Unauthorized("the key is not text".into())))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request, "statement_query").await?;
        let handle = Handle {
            sql: query.query,
            transaction: transaction(query.transaction_id.as_deref())?,
            ..Default::default()
        }
        .with_call_headers(&request)?;
        let answered = SnapshotSlot::of(&request);
        self.flight_info(caller, handle, &answered, request.into_inner())
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request, "prepared_query").await?;
        let handle =
            Handle::decode(&query.prepared_statement_handle)?.with_call_headers(&request)?;
        let answered = SnapshotSlot::of(&request);
        self.flight_info(caller, handle, &answered, request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request, "do_get").await?;
        let handle = Handle::decode(&ticket.statement_handle)?;
        self.fetch(caller, handle, &SnapshotSlot::of(&request))
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request, "do_get").await?;
        let handle =
            Handle::decode(&query.prepared_statement_handle)?.with_call_headers(&request)?;
        self.fetch(caller, handle, &SnapshotSlot::of(&request))
            .await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request, "statement_update").await?;
        let handle = Handle {
            sql: command.query,
            transaction: transaction(command.transaction_id.as_deref())?,
            ..Default::default()
        }
        .with_call_headers(&request)?;
        self.update(&caller, &handle, &SnapshotSlot::of(&request))
            .await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request, "statement_ingest").await?;
        let answered = SnapshotSlot::of(&request);
        let (rows, snapshot) = self
            .ingest(&caller, command, request.into_inner())
            .await
            .map_err(status::status)?;
        answered.fill(snapshot);
        Ok(rows as i64)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.caller(&request, "bind_parameters").await?;
        let mut handle = Handle::decode(&query.prepared_statement_handle)?;
        let rows = Self::parameter_rows(request.into_inner()).await?;
        // A client binds before it knows whether the statement will be
        // queried or run as an update: several rows are kept for an update
        // (a query refuses them when it runs).
        match rows.as_slice() {
            [] => {}
            [row] => handle.params = Some(row.clone()),
            _ => {
                handle.params = None;
                handle.param_rows = rows;
            }
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request, "prepared_update").await?;
        let mut handle =
            Handle::decode(&query.prepared_statement_handle)?.with_call_headers(&request)?;
        let answered = SnapshotSlot::of(&request);
        let sent = Self::parameter_rows(request.into_inner()).await?;
        // Rows sent with the call, else the rows bound before it.
        let rows = if sent.is_empty() {
            std::mem::take(&mut handle.param_rows)
        } else {
            sent
        };
        if rows.is_empty() {
            return self.update(&caller, &handle, &answered).await;
        }
        // One execution per row of parameters, in order, all in one
        // transaction: the caller's, or one of their own that commits only
        // when every row ran (the first failure rolls all of them back).
        let own = match handle.transaction {
            Some(_) => None,
            None => Some(self.begin(&caller, true)?),
        };
        let in_transaction = Handle {
            transaction: handle.transaction.or(own),
            ..handle
        };
        let mut total = 0;
        for row in rows {
            let bound = Handle {
                params: Some(row),
                ..in_transaction.clone()
            };
            match self.update(&caller, &bound, &answered).await {
                Ok(count) => total += count.max(0),
                Err(err) => {
                    if let Some(id) = own {
                        let _ = self.end(&caller, id, false).await;
                    }
                    return Err(err);
                }
            }
        }
        if let Some(id) = own {
            answered.fill(self.end(&caller, id, true).await?);
        }
        Ok(total)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.caller(&request, "prepare").await?;
        let transaction = transaction(query.transaction_id.as_deref())?;
        self.services
            .engine
            .check_sql_text(&query.query)
            .map_err(status::status)?;
        let handle = Handle {
            sql: query.query,
            transaction,
            ..Default::default()
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode(),
            dataset_schema: Default::default(),
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // A handle holds its statement: nothing is kept to close.
        self.caller(&request, "close_prepared").await?;
        Ok(())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let caller = self.caller(&request, "begin_transaction").await?;
        let id = self.begin(&caller, false)?;
        Ok(ActionBeginTransactionResult {
            transaction_id: id.to_string().into_bytes().into(),
        })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        use arrow_flight::sql::EndTransaction;
        let caller = self.caller(&request, "end_transaction").await?;
        let id = LakeFlight::transaction_id(&query.transaction_id)?;
        let commit = match query.action() {
            EndTransaction::Commit => true,
            EndTransaction::Rollback => false,
            EndTransaction::Unspecified => {
                return Err(status::status(Error::InvalidParameters(
                    "EndTransaction needs COMMIT or ROLLBACK".into(),
                )))
            }
        };
        // A commit names the snapshot it created, as every write does.
        SnapshotSlot::of(&request).fill(self.end(&caller, id, commit).await?);
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.caller(&request, "cancel").await?;
        let info = FlightInfo::decode(query.info).ok();
        let outcome = self.cancel(&caller, info).await?;
        // The legacy action's enum: 1 cancelled, 3 not cancellable.
        let result = match outcome {
            CancelStatus::Cancelled => 1,
            _ => 3,
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown action {:?}",
                request.get_ref().r#type
            )));
        }
        let caller = self.caller(&request, "cancel").await?;
        let body = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|e| Status::invalid_argument(format!("not a CancelFlightInfoRequest: {e}")))?;
        let outcome = self.cancel(&caller, body.info).await?;
        let result = CancelFlightInfoResult {
            status: outcome as i32,
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter(vec![
            Ok(arrow_flight::Result {
                body: result.encode_to_vec().into(),
            }),
        ]))))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "get_catalogs").await?;
        let schema = query.into_builder().schema();
        command_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "get_db_schemas").await?;
        let schema = query.clone().into_builder().schema();
        command_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "get_tables").await?;
        let schema = query.clone().into_builder().schema();
        command_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "get_table_types").await?;
        let schema = query.into_builder().schema();
        command_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "get_sql_info").await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        command_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "get_primary_keys").await?;
        command_info(query, &primary_keys_schema(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request, "do_get").await?;
        let mut builder = query.into_builder();
        builder.append(&self.services.engine.lake().name);
        Ok(batch_stream(builder.schema(), builder.build()))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request, "do_get").await?;
        let engine = &self.services.engine;
        let schemas = metadata::schemas(engine, engine.timeout_for(None)).await?;
        let mut builder = query.into_builder();
        for schema in schemas {
            builder.append(&engine.lake().name, schema);
        }
        Ok(batch_stream(builder.schema(), builder.build()))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request, "do_get").await?;
        let engine = &self.services.engine;
        let lake = engine.lake().name.clone();
        let mut builder = query.into_builder();
        let tables = metadata::tables(
            engine,
            engine.timeout_for(None),
            builder.include_schema(),
            caller.role,
        )
        .await?;
        let empty = arrow_schema::Schema::empty();
        for table in tables {
            builder
                .append(
                    &lake,
                    &table.schema,
                    &table.name,
                    table.kind,
                    table.arrow.as_ref().unwrap_or(&empty),
                )
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(batch_stream(builder.schema(), builder.build()))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request, "do_get").await?;
        let mut builder = query.into_builder();
        for kind in metadata::TABLE_TYPES {
            builder.append(kind);
        }
        Ok(batch_stream(builder.schema(), builder.build()))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request, "do_get").await?;
        let builder = query.into_builder(&self.sql_info);
        Ok(batch_stream(builder.schema(), builder.build()))
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        // DuckLake tables have no primary keys.
        self.caller(&request, "do_get").await?;
        let schema = primary_keys_schema();
        let batch = RecordBatch::new_empty(Arc::clone(&schema));
        Ok(batch_stream(schema, Ok(batch)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
