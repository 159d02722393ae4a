//! `#[tool]`: an `async fn` turned into a constructor of a kAI tool.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned as _;
use syn::{Attribute, Expr, FnArg, ItemFn, Lit, Meta, Pat, Type};

/// Expands `#[tool]` on `function`.
pub(crate) fn expand(attribute: TokenStream, function: ItemFn) -> syn::Result<TokenStream> {
    if !attribute.is_empty() {
        return Err(syn::Error::new(
            attribute.span(),
            "#[tool] takes no arguments: the function's name is the tool's",
        ));
    }
    let signature = &function.sig;
    if signature.asyncness.is_none() {
        return Err(syn::Error::new(
            signature.fn_token.span(),
            "a #[tool] function must be `async fn`",
        ));
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            signature.generics.span(),
            "a #[tool] function cannot be generic",
        ));
    }
    let description = doc_text(&function.attrs);
    if description.is_empty() {
        return Err(syn::Error::new(
            signature.ident.span(),
            "document the tool: its doc comment is the description the model reads",
        ));
    }

    let mut fields = Vec::new();
    let mut parameters = Vec::new();
    let mut call = Vec::new();
    let mut takes_context = false;
    for input in &signature.inputs {
        let FnArg::Typed(typed) = input else {
            return Err(syn::Error::new(input.span(), "a #[tool] function cannot take `self`"));
        };
        let Pat::Ident(binding) = typed.pat.as_ref() else {
            return Err(syn::Error::new(
                typed.pat.span(),
                "give each #[tool] parameter a plain name",
            ));
        };
        let name = &binding.ident;
        let ty = &typed.ty;
        // Doc comments and serde attributes describe the argument; other attributes stay on the parameter.
        let (field_attributes, parameter_attributes): (Vec<&Attribute>, Vec<&Attribute>) = typed
            .attrs
            .iter()
            .partition(|attribute| attribute.path().is_ident("doc") || attribute.path().is_ident("serde"));
        // The whole binding, so `mut name` stays `mut`.
        parameters.push(quote!(#(#parameter_attributes)* #binding: #ty));
        if is_tool_context(ty) {
            takes_context = true;
            call.push(quote!(context));
        } else {
            fields.push(quote!(#(#field_attributes)* #name: #ty));
            call.push(quote!(args.#name));
        }
    }

    let visibility = &function.vis;
    let name = &signature.ident;
    let tool_name = name.to_string();
    let output = &signature.output;
    let body = &function.block;
    // Attributes that decide whether the tool exists, and lint levels (which reach the body nested in
    // the constructor too), stay on the constructor; the rest (`#[instrument]`, ...) are about the body
    // and go on the function that runs it, which has the tool's name, so a span is named after it.
    let (constructor_attributes, body_attributes): (Vec<&Attribute>, Vec<&Attribute>) = function
        .attrs
        .iter()
        .filter(|attribute| !attribute.path().is_ident("doc"))
        .partition(|attribute| {
            [
                "cfg",
                "cfg_attr",
                "deprecated",
                "allow",
                "expect",
                "warn",
                "deny",
                "forbid",
            ]
            .iter()
            .any(|name| attribute.path().is_ident(name))
        });
    let constructor_doc = format!("The `{tool_name}` tool: {description}");
    let args_type = format_ident!("__{}ToolArgs", pascal_case(&tool_name));
    let context = if takes_context { quote!(context) } else { quote!(_) };
    Ok(quote! {
        #[doc = #constructor_doc]
        #(#constructor_attributes)*
        #visibility fn #name() -> impl ::kai_core::Tool + 'static {
            #[::kai_core::tool_args]
            #[allow(non_camel_case_types)]
            struct #args_type {
                #(#fields,)*
            }

            #(#body_attributes)*
            async fn #name(#(#parameters),*) #output #body

            ::kai_core::tool_fn(#tool_name, #description, |args: #args_type, #context: ::kai_core::ToolContext| async move {
                #name(#(#call),*).await
            })
        }
    })
}

/// The text of `///` comments, lines joined and trimmed.
fn doc_text(attributes: &[Attribute]) -> String {
    let lines: Vec<String> = attributes
        .iter()
        .filter(|attribute| attribute.path().is_ident("doc"))
        .filter_map(|attribute| match &attribute.meta {
            Meta::NameValue(pair) => match &pair.value {
                Expr::Lit(literal) => match &literal.lit {
                    Lit::Str(text) => Some(text.value().trim().to_owned()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// Whether a parameter's type is `ToolContext` (by its last path segment).
fn is_tool_context(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "ToolContext"),
        _ => false,
    }
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect()
}
